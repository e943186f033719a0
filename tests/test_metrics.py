"""Shipped evaluate modules and latent similarity, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_bridges.metrics import (
    available_metrics,
    classification_scores,
    jaccard_at_k,
    latent_similarity,
    mean_cosine,
    mrr,
)


def test_shipped_modules_load_offline_by_path():
    assert {"accuracy", "f1"} <= set(available_metrics())
    # predictions [0,1,1,2] vs references [0,1,2,2]: 3/4 right; per-class F1: 1, 2/3 (p=1/2, r=1), 2/3 (p=1, r=1/2)
    scores = classification_scores([0, 1, 1, 2], [0, 1, 2, 2])
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_linear_cka_hand_value_and_invariances():
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [4.0], [9.0]])
    # 1-d CKA is the squared Pearson correlation: cov 8, var 2 and 294/9 -> 64 / (2 * 294 / 9) = 576 / 588
    assert latent_similarity(x, y, k=1)["cka"] == pytest.approx(576 / 588)
    z = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))
    assert latent_similarity(z, 3 * z @ q, k=5)["cka"] == pytest.approx(1.0)


def _circle(degrees):
    rad = np.deg2rad(degrees)
    return torch.tensor(np.stack([np.cos(rad), np.sin(rad)], axis=1))


def test_jaccard_hand_value():
    x = _circle([0, 10, 90, 100])  # 2-NN sets: {1,2} {0,2} {1,3} {1,2}
    y = _circle([0, 10, 90, 40])  # 2-NN sets: {1,3} {0,3} {1,3} {0,1}
    assert jaccard_at_k(x, y, k=2) == pytest.approx((1 / 3 + 1 / 3 + 1 + 1 / 3) / 4)
    assert jaccard_at_k(x, x, k=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="needs more than 4 samples"):
        jaccard_at_k(x, y, k=4)


def test_mrr_and_mean_cosine_hand_values():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # each counterpart ranks 2nd: MRR 1/2; cos(x_i, y_i) = 0
    assert mrr(x, y) == pytest.approx(0.5)
    assert mrr(x, x) == pytest.approx(1.0)
    assert mean_cosine(x, y) == pytest.approx(0.0)
    y2 = torch.tensor([[1.0, 1.0], [0.0, 2.0]])  # cosines 1/sqrt(2) and 1
    assert mean_cosine(x, y2) == pytest.approx((1 / math.sqrt(2) + 1) / 2)


def test_widths_differ_gives_none_not_nan():
    scores = latent_similarity(torch.randn(12, 4), torch.randn(12, 7), k=3)
    assert scores["mrr"] is None and scores["mean_cosine"] is None
    assert 0.0 <= scores["cka"] <= 1.0
