"""Issue 21.4: a stitch run keeps at most ``HF_BRIDGES_FEATURE_CACHE_MB`` of relative features (least recently used
evicted; a split too large for it streams its features per batch), so its memory does not grow with n; and the
per-pair evaluation work (map, subspace scores) is done once per pair (issue 21.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_bridges.stitching.config import HeadSpec, LatentSpec, MethodSpec, SelectSpec, TrainingSpec
from hf_bridges.stitching.evaluation import evaluate_pair
from hf_bridges.stitching.training import head_inputs, predict, train_head


def _data(n: int, seed: int, d: int = 16):
    g = np.random.default_rng(seed)
    labels = g.integers(0, 3, n)
    centres = g.normal(size=(3, d)).astype(np.float32) * 2
    return (centres[labels] + g.normal(size=(n, d)).astype(np.float32)), labels


def _features_held(cache: dict) -> int:
    return sum(v[2].nbytes for k, v in cache.items() if isinstance(k, tuple) and len(k) == 4)


def test_relative_features_stay_within_the_budget_and_give_the_same_predictions(monkeypatch):
    method = MethodSpec(name="l1", projections=["cosine", "l1"])
    training = TrainingSpec(num_epochs=2, batch_size=32)
    train, labels = _data(400, 0)
    anchors = train[:40].copy()
    tests = [_data(300, s)[0] for s in (1, 2, 3)]
    entry = 300 * 2 * 40 * 4  # one test split's features: 96,000 bytes

    unbounded: dict = {}
    head = train_head(method, HeadSpec(), training, train, labels, anchors, 3, seed=0, feature_cache=unbounded)
    expected = [predict(head, x, anchors, feature_cache=unbounded) for x in tests]

    budget = 1.25 * entry  # room for one test split, not for the train split (128,000 bytes)
    monkeypatch.setenv("HF_BRIDGES_FEATURE_CACHE_MB", str(budget / 2**20))
    bounded: dict = {}
    again = train_head(method, HeadSpec(), training, train, labels, anchors, 3, seed=0, feature_cache=bounded)
    assert _features_held(bounded) == 0  # the train split alone is over the budget: its features are streamed
    for x, want in zip(tests, expected):
        np.testing.assert_allclose(predict(again, x, anchors, feature_cache=bounded), want, atol=1e-4)
        assert _features_held(bounded) <= budget
    held = [k for k in bounded if isinstance(k, tuple) and len(k) == 4]
    assert _features_held(bounded) == entry and len(held) == 1  # the older splits were evicted
    assert head_inputs(again, tests[0], anchors, bounded).dim() == 3  # re-cached on demand
    assert _features_held(unbounded) > 3 * entry  # what the run kept before: every split, for the whole run


def test_the_aligned_map_of_a_pair_is_fitted_once_for_every_seed(monkeypatch):
    from hf_bridges.heads import translation

    calls = []
    original = translation.fit_translation
    monkeypatch.setattr(translation, "fit_translation", lambda *a, **k: calls.append(1) or original(*a, **k))
    method = MethodSpec(name="default", kind="default")
    x, labels = _data(300, 0)
    rotation = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))[0].numpy()
    anchors_a, anchors_b = x[:60].copy(), (x[:60] @ rotation).astype(np.float32)
    test_a, test_b = x[200:].copy(), (x[200:] @ rotation).astype(np.float32)
    cache: dict = {}
    results = []
    for seed in (0, 1, 2):
        head = train_head(
            method, HeadSpec(), TrainingSpec(num_epochs=1), x, labels, anchors_a, 3, seed, feature_cache=cache
        )
        results.append(
            evaluate_pair(head, method, test_a, anchors_a, test_b, anchors_b, labels[200:], LatentSpec(), cache)
        )
        fresh = evaluate_pair(head, method, test_a, anchors_a, test_b, anchors_b, labels[200:], LatentSpec(), None)
        assert fresh["accuracy"] == results[-1]["accuracy"] and fresh["alignment"] == results[-1]["alignment"]
    assert len(calls) == 1 + 3  # once for the three seeds with the cache, once per seed without it
    assert {r["alignment"]["stitch_score"] for r in results} == {results[0]["alignment"]["stitch_score"]}


def test_subspace_scores_of_a_pair_are_computed_once(monkeypatch):
    from hf_bridges.stitching import evaluation

    calls = []
    original = evaluation.subspace_scores
    monkeypatch.setattr(evaluation, "subspace_scores", lambda *a: calls.append(1) or original(*a))
    method = MethodSpec(name="sel", projections=["cosine", "euclidean"], select=SelectSpec())
    x, labels = _data(200, 0)
    anchors_a, anchors_b = x[:30].copy(), x[:30] * 2 + 1
    cache: dict = {}
    for seed in (0, 1):
        head = train_head(
            method, HeadSpec(), TrainingSpec(num_epochs=1), x, labels, anchors_a, 3, seed, feature_cache=cache
        )
        result = evaluate_pair(
            head, method, x[100:], anchors_a, x[100:] * 2 + 1, anchors_b, labels[100:], LatentSpec(), cache
        )
        assert set(result["subspace_scores"]) == {"cosine", "euclidean"}
    assert len(calls) == 1


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's
