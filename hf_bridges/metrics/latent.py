"""Latent similarity between two spaces X, Y (n, d) whose rows are the same n samples.

- linear CKA (Kornblith et al., 2019): similarity of the two Gram structures, invariant to rotations and scaling;
- Jaccard@k: overlap of each sample's k nearest neighbours (cosine, itself excluded) in X and in Y;
- MRR: retrieving y_i among all rows of Y with x_i as the query (cosine); needs d_X == d_Y;
- mean cosine: mean of cos(x_i, y_i); needs d_X == d_Y.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..heads.compatibility import linear_cka


def _cosine_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.double(), dim=-1) @ F.normalize(y.double(), dim=-1).T


def jaccard_at_k(x: torch.Tensor, y: torch.Tensor, k: int = 10) -> float:
    if k >= x.shape[0]:
        raise ValueError(f"Jaccard@{k} needs more than {k} samples, got {x.shape[0]}")
    eye = torch.eye(x.shape[0], dtype=torch.bool)
    nx = _cosine_matrix(x, x).masked_fill(eye, -torch.inf).topk(k, dim=1).indices
    ny = _cosine_matrix(y, y).masked_fill(eye, -torch.inf).topk(k, dim=1).indices
    scores = []
    for a, b in zip(nx.tolist(), ny.tolist()):
        a, b = set(a), set(b)
        scores.append(len(a & b) / len(a | b))
    return float(sum(scores) / len(scores))


def mrr(x: torch.Tensor, y: torch.Tensor) -> float:
    sim = _cosine_matrix(x, y)
    target = sim.diagonal().unsqueeze(1)
    ranks = 1 + (sim > target).sum(dim=1)  # ties count in the query's favour
    return float((1.0 / ranks.double()).mean())


def mean_cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(F.cosine_similarity(x.double(), y.double(), dim=-1).mean())


def latent_similarity(x: torch.Tensor, y: torch.Tensor, k: int = 10) -> dict[str, float | None]:
    """All four measures (Jaccard at ``k``); MRR and mean cosine are None when the widths differ."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"latent similarity needs the same samples in both spaces, got {x.shape[0]} and {y.shape[0]}")
    same_width = x.shape[1] == y.shape[1]
    return {
        "cka": linear_cka(x, y),
        "jaccard": jaccard_at_k(x, y, k),
        "mrr": mrr(x, y) if same_width else None,
        "mean_cosine": mean_cosine(x, y) if same_width else None,
    }
