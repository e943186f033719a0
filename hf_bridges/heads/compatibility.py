"""Label-free compatibility between two encoders' anchor spaces, and the attach-time choice of subspaces.

The same anchor inputs, embedded by the training encoder and by a new encoder, give two anchor-vs-anchor relative
matrices per projection. Where they agree (high linear CKA), that projection's subspace transfers; where they do
not, the head will see inputs unlike its training data. Choosing the subspaces from these scores uses no labels.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..modeling.projections import get_projection
from ..modeling.transforms import get_abs_transform


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) between two (n, d1) and (n, d2) matrices, in float64."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs the same rows in both matrices, got {x.shape[0]} and {y.shape[0]}")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def anchor_space(
    anchor_embeddings: torch.Tensor, projections: Sequence[str], abs_transform: str = "none"
) -> dict[str, torch.Tensor]:
    """Anchor-vs-anchor relative matrices (k, k), one per projection, as the head computes them."""
    _, anchors = get_abs_transform(abs_transform)(anchor_embeddings, anchor_embeddings)
    return {name: get_projection(name).fn(anchors, anchors) for name in projections}


def subspace_scores(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per-projection linear CKA between two encoders' anchor spaces (same anchors, same order)."""
    missing = sorted(set(source) ^ set(target))
    if missing:
        raise ValueError(f"anchor spaces cover different projections: {missing}")
    return {name: linear_cka(source[name], target[name]) for name in source}


def select_subspaces(
    scores: Mapping[str, float], projections: Sequence[str], tolerance: float = 0.02, mode: str = "hard"
) -> list[float]:
    """Subspace weights in ``projections`` order.

    ``hard``: 1 for projections whose score is within ``tolerance`` of the best, else 0.
    ``soft``: weights proportional to ``exp((score - best) / tolerance)``, a smooth version of the same rule.
    """
    best = max(scores[name] for name in projections)
    if mode == "hard":
        return [1.0 if scores[name] >= best - tolerance else 0.0 for name in projections]
    if mode == "soft":
        weights = torch.tensor([(scores[name] - best) / tolerance for name in projections], dtype=torch.float64).exp()
        return (weights / weights.max()).tolist()
    raise ValueError(f"unknown selection mode {mode!r}; valid: ['hard', 'soft']")
