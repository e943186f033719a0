"""End to end on the two real packaged MiniLM encoders (placed by `hf-bridges offline-seed`), on a BBC subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stitch_helpers import small_bbc_config

from hf_bridges.offline.assets import is_placed
from hf_bridges.stitching import run_stitch

L6, L3 = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (is_placed(L6) and is_placed(L3)),
        reason="packaged MiniLM encoders not in the HF cache: run `hf-bridges offline-seed`",
    ),
]


def test_bbc_subset_stitches_between_real_minilms(tmp_path):
    config = small_bbc_config()
    results = run_stitch(config, tmp_path / "out", cache_dir=str(tmp_path / "cache"), quiet=True)

    summary = results["summary"]
    assert set(summary) == {"absolute", "cosine", "product+select"}
    # 5 balanced-ish classes: chance is ~0.2. Real encoders on BBC separate topics easily.
    assert summary["cosine"]["same_accuracy"]["mean"] > 0.7
    assert summary["cosine"]["stitched_accuracy"]["mean"] > 0.5
    assert summary["product+select"]["stitched_accuracy"]["mean"] > 0.5
    assert summary["cosine"]["same_accuracy"]["n"] == 2  # two seeds -> mean ± std
    select_cell = summary["product+select"]["matrix"]["MiniLM-L6"]["MiniLM-L3"]
    assert sum(w > 0 for w in select_cell["subspace_weights"].values()) >= 1
    assert set(select_cell["subspace_scores"]) == {"cosine", "euclidean", "l1", "linf"}
    # the relative space of a stitched pair is similar but not identical
    assert 0.2 < summary["cosine"]["stitched_cka"]["mean"] < 1.0

    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["encoders"]["MiniLM-L3"]["revision"] and len(saved["runs"]) == 3 * 2 * 2 * 2
    report = (out / "report.md").read_text()
    assert "| method | same acc | stitched acc" in report and "MiniLM-L6" in report
    for name in summary:
        png = Path(results["outputs"]["plots"][name])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_alignment_set_reaches_the_maps_of_translation_and_default(tmp_path):
    from hf_bridges.stitching.config import MethodSpec

    config = small_bbc_config()
    config.anchors.alignment = 60
    config.seeds = [0]
    config.methods = [MethodSpec(name="translation", kind="translation"), MethodSpec(name="default", kind="default")]
    results = run_stitch(config, tmp_path / "out", cache_dir=str(tmp_path / "cache"), quiet=True)
    anchors = results["anchors"]
    assert len(anchors["indices"]) == 30 and len(anchors["alignment_indices"]) == 60
    assert not set(anchors["indices"]) & set(anchors["alignment_indices"])
    stitched = [r for r in results["runs"] if r["method"] == "default" and r["train"] != r["test"]]
    assert stitched and all(r["alignment"]["pairs"] == 90 for r in stitched)
    assert results["summary"]["default"]["stitched_accuracy"]["mean"] > 0.5
    assert results["summary"]["translation"]["stitched_accuracy"]["mean"] > 0.5


def test_absolute_and_translation_share_one_trained_head(tmp_path):
    """The translation baseline trains the absolute head with the same seed and rows: the run trains it once and
    evaluates it under both methods (same-encoder cells identical, one training time reported for both)."""
    from hf_bridges.stitching.config import MethodSpec

    config = small_bbc_config()
    config.seeds = [0]
    config.methods = [MethodSpec(name="absolute", kind="absolute"), MethodSpec(name="translation", kind="translation")]
    results = run_stitch(config, tmp_path / "out", cache_dir=str(tmp_path / "cache"), quiet=True)
    runs = {(r["method"], r["train"], r["test"]): r for r in results["runs"]}
    translation = [key for key in runs if key[0] == "translation"]
    assert len(translation) == 4
    for _, train, test in translation:
        twin, run = runs["absolute", train, test], runs["translation", train, test]
        assert run["train_seconds"] == twin["train_seconds"]  # one head, trained once
        if train == test:
            assert run["accuracy"] == twin["accuracy"] and run["macro_f1"] == twin["macro_f1"]
