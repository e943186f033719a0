"""The contrastive candidate of the index bridge: the rotation fine-tuned for ranking (InfoNCE over the paired texts,
stopped on a held-out split's own loss), kept by ``translation="best"`` where the label-free score prefers it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hf_bridges.heads.format import CONFIG_NAME
from hf_bridges.retrieval import IndexBridge, retrieval_metrics
from hf_bridges.retrieval.maps import LinearMap, fit_candidate, fit_contrastive, fit_rotation


def nuisance_pairs(rows: int, seed: int = 0):
    """Two unit-norm 24-d encoders: 16 dimensions carry a shared latent (one a rotation of the other, plus noise),
    8 carry each encoder's own text-specific noise. The rotation, the least-squares fit among orthogonal maps, must
    carry the old encoder's noise dimensions somewhere; a map fitted for ranking can mute them. Also returns the
    latent -> (old, new) encoding for labelled evaluation items."""
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]

    def encode(z):
        old = np.hstack([z + 0.2 * rng.normal(size=z.shape), rng.normal(size=(len(z), 8))])
        new = np.hstack([z @ rotation + 0.2 * rng.normal(size=z.shape), rng.normal(size=(len(z), 8))])
        return tuple(x / np.linalg.norm(x, axis=1, keepdims=True) for x in (old, new))

    return *encode(rng.normal(size=(rows, 16))), encode


def test_the_contrastive_map_fits_deterministically_from_the_rotation():
    """It starts from the rotation and stops at the held-out split's lowest loss (never above the rotation's), is
    a plain ``LinearMap`` reading directions, and gives the same map for the same seed."""
    old, new, _ = nuisance_pairs(300)
    w, b, info = fit_contrastive(old, new, seed=3)
    w2, b2, _ = fit_contrastive(old, new, seed=3)
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(b, b2)
    assert info["held_out_loss"] <= info["rotation_held_out_loss"] and info["steps"] > 0, info
    rotation = fit_rotation(old, new)[0]
    assert w.shape == rotation.shape == (24, 24) and not np.allclose(w, rotation)
    fitted = fit_candidate(old, new, True, "contrastive")
    assert isinstance(fitted, LinearMap) and fitted.unit_input and fitted.info["map"].startswith("contrastive")


def test_the_contrastive_map_retrieves_better_where_the_rotation_cannot_reshape_the_space():
    """300 pairs of encoders whose noise dimensions least squares and ranking weigh differently: new-encoder
    queries of 1,000 held-out latent documents find more of them in the migrated index with the contrastive map than
    with the rotation it started from (0.857 vs 0.726)."""
    old, new, encode = nuisance_pairs(300)
    rng = np.random.default_rng(7)
    docs = rng.normal(size=(1000, 16))
    d_old, _ = encode(docs)
    _, q_new = encode(docs + 0.7 * rng.normal(size=docs.shape))
    recall = {
        kind: retrieval_metrics(q_new, fit_candidate(old, new, True, kind)(d_old))["recall@10"]
        for kind in ("rotation", "contrastive")
    }
    assert recall["contrastive"] > recall["rotation"] + 0.05, recall


def test_a_bridge_with_the_contrastive_map_round_trips(tmp_path):
    """``translation="contrastive"`` fits both sides with it; saved, it is a plain format-2 bridge (weight, bias,
    input normalisation, output length) that loads to the same vectors."""
    old, new, _ = nuisance_pairs(200)
    bridge = IndexBridge.fit_embeddings(old, new, texts=[f"t{i}" for i in range(200)], translation="contrastive")
    assert bridge.query_map.info["map"].startswith("contrastive")
    folder = bridge.save_pretrained(tmp_path / "c")
    assert json.loads(Path(folder, CONFIG_NAME).read_text())["index_bridge"]["format"] == 2
    loaded = IndexBridge.from_pretrained(str(folder))
    x, q = old[:9].astype(np.float32), new[:9].astype(np.float32)
    np.testing.assert_allclose(loaded.migrate(x), bridge.migrate(x), atol=1e-6)
    np.testing.assert_allclose(loaded.map_queries(q), bridge.map_queries(q), atol=1e-6)
    assert loaded.migrate_map.unit_input and loaded.query_map.info["map"].startswith("contrastive")
