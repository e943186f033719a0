"""`stitch` with best_head.repo_id: a small real-MiniLM run (BBC subset) pushes its best head to the loopback Hub
(tests/hub_server.py, real HTTP); pulled back by repo id and attached to MiniLM-L3 (and to its training encoder),
it predicts with the accuracy the run recorded for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_server import GITATTRIBUTES, TOKEN, Repo, hub_fixture
from huggingface_hub import HfApi, snapshot_download
from stitch_helpers import small_bbc_config

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.format import CARD_NAME, HEAD_FILES, read_head
from hf_bridges.heads.hub import pull_head
from hf_bridges.offline.assets import is_placed
from hf_bridges.stitching import run_stitch
from hf_bridges.stitching.best_head import BestHeadTracker, choose_method
from hf_bridges.stitching.config import BestHeadSpec, ConfigError, parse_config
from hf_bridges.stitching.runner import load_splits

L6, L3 = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"
REPO = "alice/bbc-best-head"

hub = pytest.fixture(hub_fixture)
needs_minilm = pytest.mark.skipif(
    not (is_placed(L6) and is_placed(L3)),
    reason="packaged MiniLM encoders not in the HF cache: run `hf-bridges offline-seed`",
)


@pytest.fixture(scope="module")
def snapshots() -> dict[str, Path]:
    """The cached MiniLM snapshot folders, found before ``hub`` points the HF cache at a temporary folder."""
    return {repo: Path(snapshot_download(repo, local_files_only=True)) for repo in (L6, L3)}


def serve(hub, snapshots: dict[str, Path]) -> None:
    """Publish the real encoder files on the loopback Hub, so the run and the attach download them over HTTP
    into the test's own cache like from huggingface.co (the fixture's cache starts empty)."""
    for repo_id, folder in snapshots.items():
        repo = Repo(repo_id, private=False)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        repo.commit({".gitattributes": GITATTRIBUTES, **files}, None, "upload encoder")
        hub.state.repos[repo_id] = repo


def small_config():
    """The default config on a BBC subset (as tests/test_stitch_e2e.py), best head pushed to alice's namespace."""
    config = small_bbc_config()
    assert config.best_head is None  # off by default
    # the best *product* head: the method, and its attach-time subspace selection gets exercised too
    config.best_head = BestHeadSpec(repo_id=REPO, method="best-product")
    return config


def accuracy(model, texts: list[str], labels: np.ndarray) -> float:
    tokens = model.tokenizer(
        texts, padding=True, truncation=True, max_length=model.config.max_seq_length, return_tensors="pt"
    )
    with torch.no_grad():
        predictions = model(**tokens).logits.argmax(-1).numpy()
    return float((predictions == labels).mean())


@pytest.mark.slow
@needs_minilm
def test_stitch_pushes_its_best_head(hub, snapshots, tmp_path):
    serve(hub, snapshots)
    config = small_config()
    results = run_stitch(config, tmp_path / "out", cache_dir=str(tmp_path / "cache"), quiet=True, hub_token=TOKEN)
    best = results["best_head"]

    # the only product method here; then its best (seed, training encoder) head by mean stitched accuracy
    assert best["method"] == "product+select" and best["subspace_selection"] == "hard"
    heads = {(r["seed"], r["train"]): [] for r in results["runs"] if r["method"] == best["method"]}
    for r in results["runs"]:
        if r["method"] == best["method"] and r["train"] != r["test"]:
            heads[r["seed"], r["train"]].append(r["accuracy"])
    assert max(heads.values(), key=np.mean) == heads[best["seed"], best["train_encoder"]]
    train_id = best["train_encoder_id"]
    assert train_id in (L6, L3) and best["per_encoder"]["MiniLM-L3"]["id"] == L3

    # written locally, pushed, and results.json says where
    assert read_head(tmp_path / "out" / "best-head").config["num_anchors"] == 30
    assert read_head(tmp_path / "out" / "best-head").config["anchors_in_training"] is True  # trained on them
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["best_head"]["hub"]["commit"] == hub.state.repos[REPO].branches["main"]
    files = sorted(f.rfilename for f in HfApi(token=TOKEN).model_info(REPO).siblings)
    assert files == sorted([".gitattributes", CARD_NAME, *HEAD_FILES])

    # the card: metrics on the training encoder, the per-encoder stitching results and the run's table
    card = (pull_head(REPO) / CARD_NAME).read_text()
    assert f"base_model: {train_id}" in card and REPO in card
    assert "## Stitching results" in card and "## Zero-shot stitching benchmark" in card
    assert f"method `{best['method']}`" in card and "| method | same acc | stitched acc" in card
    assert "among product methods (>= 2 projections)" in card and 'subspace_selection="hard"' in card
    for name in ("absolute", "cosine", "product+select"):
        assert f"| {name} |" in card
    for cell in best["per_encoder"].values():
        assert f"| `{cell['id']}` | {cell['stitch_score']:.3f} | {cell['accuracy']:.3f} |" in card

    # attached by repo id, the head predicts the test split as the run recorded (same encoder and stitched).
    # The run embedded through the stitch cache, the bridge embeds itself (other batches, padding): embeddings
    # agree to ~1e-6, so only a near-tie logit can flip (measured here: identical accuracies). Allowed: 1 of 50.
    _, test = load_splits(config, "text")
    labels = np.asarray(test["label"])
    selection = best["subspace_selection"]
    for name, encoder_id in (("MiniLM-L3", L3), ("MiniLM-L6", L6)):  # one is the training encoder, one stitched
        model = BridgeForSequenceClassification.from_encoder(encoder_id, head=REPO, subspace_selection=selection)
        assert model.config.id2label[0] == results["dataset"]["label_names"][0]
        recorded = best["per_encoder"][name]["accuracy"]
        assert recorded > 0.5  # 5 classes: far above chance, so agreeing with it means something
        got = accuracy(model, list(test["text"]), labels)
        chosen = best["per_encoder"][name]["subspace_weights"]
        assert model.config.subspace_weights == list(chosen.values()), (name, chosen)  # the run's own choice
        assert abs(got - recorded) <= 1 / len(labels) + 1e-9, (encoder_id, got, recorded)


def test_choice_rule_and_tracker():
    """Relative methods only; highest mean stitched accuracy, ties -> higher same accuracy -> config order; the
    tracker keeps one state dict per method, the head with the best own stitched accuracy (earlier on ties)."""
    methods = [
        {"name": "abs", "kind": "absolute"},
        {"name": "cos", "projections": ["cosine"]},
        {"name": "prod", "projections": ["cosine", "l1"]},
        {"name": "prod2", "projections": ["cosine", "l1"]},
    ]
    config = parse_config(
        {"encoders": [{"id": L6, "name": "a"}, {"id": L3, "name": "b"}], "methods": methods, "best_head": True}
    )
    cell = lambda x: {"mean": x, "std": 0.0, "n": 1}
    summary = {
        "abs": {"same_accuracy": cell(0.99), "stitched_accuracy": cell(0.99)},
        "cos": {"same_accuracy": cell(0.90), "stitched_accuracy": cell(0.80)},
        "prod": {"same_accuracy": cell(0.95), "stitched_accuracy": cell(0.70)},
        "prod2": {"same_accuracy": cell(0.96), "stitched_accuracy": cell(0.70)},
    }
    assert choose_method(summary, config).name == "cos"  # never the absolute baseline, whatever it scores
    config.best_head.method = "best-product"
    assert choose_method(summary, config).name == "prod2"  # tie on stitched: the higher same accuracy
    summary["prod2"]["same_accuracy"] = cell(0.95)
    assert choose_method(summary, config).name == "prod"  # full tie: config order
    config.best_head.method = "cos"
    assert choose_method(summary, config).name == "cos"

    tracker, method = BestHeadTracker(), config.methods[1]
    run = lambda seed, train, test, acc: {"seed": seed, "train": train, "test": test, "accuracy": acc}
    heads = (  # (seed, training encoder, weight, (accuracy on a, accuracy on b)); stitched = the other encoder
        (0, "a", 1.0, (0.9, 0.6)),  # stitched 0.6
        (0, "b", 2.0, (0.7, 0.95)),  # stitched 0.7, same 0.95: best so far
        (1, "a", 3.0, (1.0, 0.7)),  # stitched 0.7, same 1.0: wins the tie on same accuracy
        (1, "b", 4.0, (0.7, 1.0)),  # stitched 0.7, same 1.0: full tie, the earlier head stays
    )
    for seed, source, weight, accs in heads:
        head = torch.nn.Linear(2, 2)
        torch.nn.init.constant_(head.weight, weight)
        tracker.offer(method, seed, source, head, [run(seed, source, "a", accs[0]), run(seed, source, "b", accs[1])])
        torch.nn.init.constant_(head.weight, -1.0)  # the kept copy must not follow later changes
    tracker.offer(config.methods[0], 0, "a", torch.nn.Linear(2, 2), [run(0, "a", "b", 1.0)])  # absolute: ignored
    (stitched, same), seed, source, state = tracker.best["cos"]
    assert set(tracker.best) == {"cos"} and (seed, source, stitched, same) == (1, "a", 0.7, 1.0)
    assert torch.equal(state["weight"], torch.full((2, 2), 3.0))


def test_best_head_config_errors():
    base = {
        "encoders": [{"id": L6, "name": "a"}, {"id": L3, "name": "b", "prefix": "query: "}],
        "methods": [{"name": "abs", "kind": "absolute"}, {"name": "cos", "projections": ["cosine"]}],
    }
    with pytest.raises(ConfigError, match="prefix"):
        parse_config({**base, "best_head": True})
    ok = {**base, "encoders": base["encoders"][:1]}
    assert parse_config({**ok, "best_head": {"repo_id": "me/head"}}).best_head.repo_id == "me/head"
    assert parse_config({**ok, "best_head": False}).best_head is None
    with pytest.raises(ConfigError, match="no product relative method"):
        parse_config({**ok, "best_head": {"method": "best-product"}})
    with pytest.raises(ConfigError, match="did you mean 'cos'"):
        parse_config({**ok, "best_head": {"method": "coss"}})
    with pytest.raises(ConfigError, match="valid"):
        parse_config({**ok, "best_head": {"method": "abs"}})  # the absolute baseline is never a head to push
    with pytest.raises(ConfigError, match="not a Hub repo id"):
        parse_config({**ok, "best_head": {"repo_id": "a/b/c"}})
    with pytest.raises(ConfigError, match="unknown key 'repo'"):
        parse_config({**ok, "best_head": {"repo": "me/head"}})


def test_push_refused_offline_before_any_work(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = parse_config(
        {
            "encoders": [{"id": L6}],
            "methods": [{"name": "cos", "projections": ["cosine"]}],
            "best_head": {"repo_id": "me/head"},
        }
    )
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1"):
        run_stitch(config, tmp_path / "out")
    config.best_head.method = "nope"  # set through the Python API after parsing: still checked
    with pytest.raises(ConfigError, match="best_head.method"):
        run_stitch(config, tmp_path / "out")
