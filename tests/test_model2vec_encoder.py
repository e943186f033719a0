"""Static-embedding encoders (model2vec) in the stitch benchmark: the ``model2vec`` encoder kind, the offline
distillation behind ``hf-bridges offline-seed --model2vec``, and the report's default-vs-each-bridge section."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from helpers import make_tokenizer
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv

from hf_bridges.stitching import parse_config, run_stitch
from hf_bridges.stitching.config import ConfigError
from hf_bridges.stitching.encoder_kinds import EncoderSpec, get_encoder_kind

model2vec = pytest.importorskip("model2vec")


def save_static_model(folder, seed: int = 0, dim: int = 12, typed: bool = True) -> str:
    """A tiny model2vec StaticModel: the test word-level tokenizer and random token vectors; ``typed``: with the
    model_type / architectures that model2vec's distill writes (a hand-built model's config.json has neither)."""
    tokenizer = make_tokenizer().backend_tokenizer
    vectors = np.random.default_rng(seed).standard_normal((tokenizer.get_vocab_size(), dim)).astype(np.float32)
    config = {"model_type": "model2vec", "architectures": ["StaticModel"]} if typed else None
    model2vec.StaticModel(vectors, tokenizer, config=config, normalize=True).save_pretrained(folder)
    return str(folder)


def test_model2vec_kind_embeds_like_static_model(tmp_path):
    folder = save_static_model(tmp_path / "m2v")
    kind = get_encoder_kind("model2vec")
    spec = EncoderSpec(id=folder, kind="model2vec")
    identity = kind.identity(spec)
    assert identity["kind"] == "model2vec" and identity["revision"].startswith("local-")
    assert identity["normalize"] is True and identity["model2vec"] == model2vec.__version__

    texts = ["market stock bank shares", "film music actor", "", None]
    vectors = kind.load(spec)({"text": texts})
    reference = model2vec.StaticModel.from_pretrained(folder).encode([t or "" for t in texts])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 12)
    np.testing.assert_allclose(vectors, reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-3)
    assert np.isfinite(vectors).all()  # an empty text is a zero vector, not NaN (sentence-transformers' result)

    # what changes the vectors changes the cache key; a truncation to 1 token embeds only the first word
    short = EncoderSpec(id=folder, kind="model2vec", max_seq_length=1, prefix="film ")
    assert kind.identity(short) != identity
    first = kind.load(short)({"text": ["market stock"]})
    np.testing.assert_allclose(first, kind.load(spec)({"text": ["film"]}), atol=1e-6)

    bare = save_static_model(tmp_path / "bare", typed=False)  # no model_type in config.json: still model2vec's
    np.testing.assert_allclose(kind.load(EncoderSpec(id=bare, kind="model2vec"))({"text": texts}), vectors, atol=1e-6)


def test_wrong_kind_or_pooling_names_the_fix(tmp_path):
    static = save_static_model(tmp_path / "m2v")
    bert = save_tiny_encoder(tmp_path / "bert", seed=0, hidden_size=16)
    with pytest.raises(ConfigError, match="set kind: model2vec"):
        get_encoder_kind("hf_text").identity(EncoderSpec(id=static))
    with pytest.raises(ConfigError, match="use kind: hf_text"):
        get_encoder_kind("model2vec").identity(EncoderSpec(id=bert, kind="model2vec"))
    with pytest.raises(ConfigError, match="mean-pools"):
        get_encoder_kind("model2vec").identity(EncoderSpec(id=static, kind="model2vec", pooling="cls"))


def test_stitch_run_across_families_reports_default_vs_each_bridge(tmp_path):
    """A transformer and a static model of another width in one stitch run, with the default head."""
    bert = save_tiny_encoder(tmp_path / "bert", seed=0, hidden_size=16)
    static = save_static_model(tmp_path / "m2v", seed=1, dim=12)
    raw = tiny_config([bert, static], write_topic_csv(tmp_path / "topics.csv"))
    raw["encoders"][1].update(kind="model2vec", name="static")
    raw["methods"] = [{"name": "cosine", "projections": ["cosine"]}, {"name": "default", "kind": "default"}]
    results = run_stitch(parse_config(copy.deepcopy(raw)), tmp_path / "out", cache_dir=str(tmp_path / "c"), quiet=True)

    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["encoders"]["static"]["kind"] == "model2vec"
    cell = results["summary"]["default"]["matrix"]["enc0"]["static"]
    assert 0.0 <= cell["accuracy"]["mean"] <= 1.0  # 16-d -> 12-d: stitched, not skipped
    report = (tmp_path / "out" / "report.md").read_text()
    section = report.split("## Default head vs each single bridge, per direction")[1].split("## Full matrices")[0]
    assert "| enc0 → static |" in section and "| static → enc0 |" in section
    assert "**worst pair**" in section and "of 2 directions" in section


def test_distilled_static_model_loads_under_its_base_name(tmp_path):
    """The distillation behind ``offline-seed --model2vec``, on a tiny BERT: a static model named after the
    model it came from (not the local folder), which the model2vec kind embeds with."""
    pytest.importorskip("skeletoken")
    from hf_bridges.offline.static import distil_static

    bert = save_tiny_encoder(tmp_path / "bert", seed=0, hidden_size=16)
    distil_static(bert, tmp_path / "m2v", "org/tiny-bert", pca_dims=8)
    config = json.loads((tmp_path / "m2v" / "config.json").read_text())
    assert config["tokenizer_name"] == "org/tiny-bert" and config["hidden_dim"] == 8
    vectors = get_encoder_kind("model2vec").load(EncoderSpec(id=str(tmp_path / "m2v"), kind="model2vec"))(
        {"text": ["market stock bank", "match team goal"]}
    )
    assert vectors.shape == (2, 8) and np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[1])


def test_offline_seed_model2vec_flag_selects_the_namespaced_asset(capsys, monkeypatch, tmp_path):
    from hf_bridges.cli import main
    from hf_bridges.offline import ASSETS
    from hf_bridges.offline.static import M2V_REPO

    asset = ASSETS["m2v-all-MiniLM-L6-v2-pca256"]
    assert asset.repo_id == M2V_REPO and M2V_REPO.startswith("hf-bridges-offline/") and asset.group == "model2vec"
    with pytest.raises(SystemExit):
        main(["offline-seed", "--help"])
    assert "--model2vec" in capsys.readouterr().out

    placed = []
    monkeypatch.setattr("hf_bridges.offline.place_asset", lambda name, cache: placed.append(name) or _raise(name))
    main(["offline-seed", "--model2vec", "--cache-dir", str(tmp_path)])
    assert {"m2v-all-MiniLM-L6-v2-pca256", "m2v-paraphrase-MiniLM-L3-v2-pca256"} <= set(placed)
    assert "all-mpnet-base-v2" not in placed
    placed.clear()
    main(["offline-seed", "--cache-dir", str(tmp_path)])
    assert placed and "m2v-all-MiniLM-L6-v2-pca256" not in placed


def _raise(name):
    raise OSError(f"not placed in this test: {name}")


def test_report_names_where_the_default_loses_per_direction(tmp_path):
    from hf_bridges.stitching.report import summarise, write_outputs

    config = parse_config(
        {
            "name": "families",
            "encoders": [{"id": f"org/enc{i}", "name": f"enc{i}"} for i in range(3)],
            "methods": [
                {"name": "cosine"},
                {"name": "translation", "kind": "translation"},
                {"name": "mine", "kind": "default"},
            ],
            "seeds": [0, 1],
        }
    )
    # stitched accuracy by (method, train, test); the default ("mine") loses only enc2 -> enc0, to translation
    accuracy = {"cosine": 0.80, "translation": 0.85, "mine": 0.90}
    runs = []
    for method, base in accuracy.items():
        for seed in (0, 1):
            for a in ("enc0", "enc1", "enc2"):
                for b in ("enc0", "enc1", "enc2"):
                    value = 0.97 if a == b else base - (0.3 if (method, a, b) == ("mine", "enc2", "enc0") else 0.0)
                    runs.append({"method": method, "seed": seed, "train": a, "test": b, "accuracy": value,
                                 "macro_f1": value, "latent": {}})  # fmt: skip
    results = {"runs": runs, "dataset": {"train": 90, "test": 30, "num_labels": 5}}
    results["timing_s"] = dict.fromkeys(("setup", "embedding", "heads", "evaluation", "total"), 1.0)
    results["summary"] = summarise(results, config)
    write_outputs(results, config, tmp_path)
    report = (tmp_path / "report.md").read_text()
    section = report.split("## Default head vs each single bridge, per direction")[1].split("## Full matrices")[0]
    assert "| train → test | same | mine | cosine | translation | mine − best other |" in section
    assert "| enc2 → enc0 | 0.970 | 0.600 | 0.800 | **0.850** | -0.250 (translation) |" in section
    assert "| enc0 → enc1 | 0.970 | **0.900** | 0.800 | 0.850 | +0.050 (translation) |" in section
    assert "| **mean over pairs** | | 0.850 | 0.800 | 0.850 | |" in section
    assert "| **worst pair** | | 0.600 (enc2 → enc0) |" in section
    assert "mine is at or above every other method in 5 of 6 directions; below in: enc2 → enc0 (translation" in section


@pytest.mark.slow
def test_placed_static_model_embeds_as_sentence_transformers_loads_it():
    """The model placed by ``offline-seed --model2vec`` under its namespaced id: the kind's vectors are what
    sentence-transformers' StaticEmbedding gives for the same id (to float16 rounding)."""
    from hf_bridges.offline.assets import is_placed
    from hf_bridges.offline.static import M2V_REPO

    if not is_placed(M2V_REPO):
        pytest.skip("run `hf-bridges offline-seed --model2vec` first")
    from sentence_transformers import SentenceTransformer

    texts = ["Shares in the bank fell after the profit warning.", "A warm, funny and moving film."]
    vectors = get_encoder_kind("model2vec").load(EncoderSpec(id=M2V_REPO, kind="model2vec"))({"text": texts})
    reference = SentenceTransformer(M2V_REPO, device="cpu").encode(texts).astype(np.float32)
    assert vectors.shape == (2, 256)
    np.testing.assert_allclose(vectors, reference, atol=2e-3)
