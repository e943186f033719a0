"""Anchor selection strategies: seeded, distinct, and doing what each one promises."""

from __future__ import annotations

import numpy as np
import pytest

from hf_bridges.data.anchors import ANCHOR_STRATEGIES, select_anchors


def blobs(per_blob: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight, well-separated clusters in 8-d (directions e0, e1, e2)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:3] * 10
    x = np.concatenate([c + 0.05 * rng.standard_normal((per_blob, 8)) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(3), per_blob)


def test_registry_has_the_four_strategies():
    assert {"random", "stratified", "kmeans", "farthest_point"} <= set(ANCHOR_STRATEGIES)


def test_random_is_seeded_distinct_and_in_range():
    a = select_anchors("random", 20, seed=1, num_candidates=100)
    assert a == select_anchors("random", 20, seed=1, num_candidates=100)
    assert a != select_anchors("random", 20, seed=2, num_candidates=100)
    assert len(set(a)) == 20 and all(0 <= i < 100 for i in a)


def test_stratified_follows_class_frequencies():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    chosen = select_anchors("stratified", 10, seed=0, labels=labels)
    assert np.bincount(labels[chosen]).tolist() == [6, 3, 1]
    # uneven quotas: 7 anchors -> exact shares 4.2 / 2.1 / 0.7 -> largest remainders give [4, 2, 1]
    chosen = select_anchors("stratified", 7, seed=3, labels=labels)
    assert np.bincount(labels[chosen], minlength=3).tolist() == [4, 2, 1]
    assert len(set(chosen)) == 7


@pytest.mark.parametrize("strategy", ["kmeans", "farthest_point"])
def test_space_aware_strategies_cover_every_cluster(strategy):
    x, labels = blobs()
    chosen = select_anchors(strategy, 3, seed=0, embeddings=x)
    assert sorted(labels[chosen].tolist()) == [0, 1, 2]
    assert chosen == select_anchors(strategy, 3, seed=0, embeddings=x)


def test_farthest_point_prefers_the_far_points():
    x = np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0, 1], [-1, 0]], dtype=np.float32)
    chosen = select_anchors("farthest_point", 3, seed=0, embeddings=x)
    assert {3, 4} <= set(chosen)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="did you mean 'stratified'"):
        select_anchors("stratifed", 3, num_candidates=10)
    with pytest.raises(ValueError, match="only 10 candidates"):
        select_anchors("random", 11, num_candidates=10)
    with pytest.raises(ValueError, match="pass embeddings"):
        select_anchors("kmeans", 3, num_candidates=10)
    with pytest.raises(ValueError, match="needs the labels"):
        select_anchors("stratified", 3, num_candidates=10)


def test_alignment_set_is_seeded_outside_the_anchors_and_stops_at_the_candidates():
    from hf_bridges.data.anchors import select_alignment_set

    anchors = [0, 3, 5, 7]
    picked = select_alignment_set(20, anchors, 10, seed=1)
    assert len(picked) == len(set(picked)) == 10 and not set(picked) & set(anchors)
    assert picked == select_alignment_set(20, anchors, 10, seed=1) != select_alignment_set(20, anchors, 10, seed=2)
    assert sorted(select_alignment_set(20, anchors, 100)) == sorted(set(range(20)) - set(anchors))
