"""Latent similarity between two spaces X, Y (n, d) whose rows are the same n samples.

- linear CKA (Kornblith et al., 2019): similarity of the two Gram structures, invariant to rotations and scaling;
- Jaccard@k: overlap of each sample's k nearest neighbours (cosine, itself excluded) in X and in Y;
- MRR: retrieving y_i among all rows of Y with x_i as the query (cosine); needs d_X == d_Y;
- mean cosine: mean of cos(x_i, y_i); needs d_X == d_Y.

Each space's (n, n) products are computed once (:func:`latent_space`) and shared by the scores: the cosine matrix
feeds Jaccard@k and, rescaled by the row norms and centred, the CKA's Gram matrix, so a pair costs three n x n x d
products (X X^T, Y Y^T, X Y^T) instead of five, and a space compared with several others (a head's reference
representation against every new encoder) is prepared once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

_EPS = 1e-12  # F.normalize's default
_COSINE_EPS = 1e-8  # F.cosine_similarity's default


def _cosine_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.double(), dim=-1) @ F.normalize(y.double(), dim=-1).T


@dataclass
class LatentSpace:
    """One space's rows, unit-normalised (float64), and what every score against it reuses (built lazily)."""

    rows: torch.Tensor
    unit: torch.Tensor
    norms: torch.Tensor  # the divisors of ``unit``: rows = norms[:, None] * unit
    _cosine: torch.Tensor | None = field(default=None, repr=False)
    _neighbours: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _centred: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def cosine(self) -> torch.Tensor:
        """(n, n) cosine similarities of the rows."""
        if self._cosine is None:
            self._cosine = self.unit @ self.unit.T
        return self._cosine

    def neighbours(self, k: int) -> torch.Tensor:
        """(n, k): each row's k most similar rows (cosine), itself excluded."""
        if k not in self._neighbours:
            self._neighbours[k] = self.cosine.clone().fill_diagonal_(-torch.inf).topk(k, dim=1).indices
        return self._neighbours[k]

    def centred_gram(self) -> tuple[torch.Tensor, torch.Tensor]:
        """H X X^T H (H: the centring matrix), the linear CKA's kernel, and its Frobenius norm; X X^T is the cosine
        matrix rescaled by the row norms (no second n x n x d product)."""
        if self._centred is None:
            gram = self.cosine * self.norms[:, None] * self.norms[None, :]
            gram = gram - gram.mean(dim=0, keepdim=True)
            gram = gram - gram.mean(dim=1, keepdim=True)
            self._centred = (gram, torch.linalg.matrix_norm(gram))
        return self._centred


def latent_space(x: torch.Tensor | LatentSpace) -> LatentSpace:
    """``x`` (n, d) prepared for :func:`latent_similarity` (a :class:`LatentSpace` is returned as is)."""
    if isinstance(x, LatentSpace):
        return x
    rows = x.double()
    norms = torch.linalg.vector_norm(rows, dim=-1).clamp_min(_EPS)
    return LatentSpace(rows=rows, unit=F.normalize(rows, dim=-1), norms=norms)


def jaccard_at_k(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace, k: int = 10) -> float:
    x, y = latent_space(x), latent_space(y)
    if k >= x.unit.shape[0]:
        raise ValueError(f"Jaccard@{k} needs more than {k} samples, got {x.unit.shape[0]}")
    n = x.unit.shape[0]  # each row's neighbour sets as (n, n) masks: |A & B| per row, |A | B| = 2k - |A & B|
    a = torch.zeros(n, n, dtype=torch.bool).scatter_(1, x.neighbours(k), True)
    shared = (a & torch.zeros(n, n, dtype=torch.bool).scatter_(1, y.neighbours(k), True)).sum(1)
    scores = (shared.double() / (2 * k - shared).double()).tolist()  # int / int, correctly rounded, as in Python
    return float(sum(scores) / len(scores))  # summed in row order, as before


def mrr(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace) -> float:
    x, y = latent_space(x), latent_space(y)
    sim = x.unit @ y.unit.T
    target = sim.diagonal().unsqueeze(1)
    ranks = 1 + (sim > target).sum(dim=1)  # ties count in the query's favour
    return float((1.0 / ranks.double()).mean())


def mean_cosine(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace) -> float:
    x, y = latent_space(x), latent_space(y)
    if bool((x.norms < _COSINE_EPS).any()) or bool((y.norms < _COSINE_EPS).any()):
        return float(F.cosine_similarity(x.rows, y.rows, dim=-1).mean())
    # F.cosine_similarity is sum((x / |x|) * (y / |y|)) with each norm clamped at 1e-8: above it, the unit rows'
    # products, bit for bit, without normalising both (n, d) matrices again
    return float((x.unit * y.unit).sum(dim=-1).mean())


def gram_cka(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace) -> float:
    """Linear CKA from the two spaces' centred Gram matrices (equal to ``heads.compatibility.linear_cka`` up to float64
    rounding, ~1e-15)."""
    x, y = latent_space(x), latent_space(y)
    (gx, nx), (gy, ny) = x.centred_gram(), y.centred_gram()
    norm = nx * ny
    return float((gx * gy).sum() / norm) if norm > 0 else 0.0


def latent_similarity(
    x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace, k: int = 10
) -> dict[str, float | None]:
    """All four measures (Jaccard at ``k``); MRR and mean cosine are None when the widths differ. ``x`` / ``y`` may be
    :func:`latent_space` objects, to reuse one space's products against several others."""
    x, y = latent_space(x), latent_space(y)
    if x.rows.shape[0] != y.rows.shape[0]:
        raise ValueError(
            f"latent similarity needs the same samples in both spaces, got {x.rows.shape[0]} and {y.rows.shape[0]}"
        )
    same_width = x.rows.shape[1] == y.rows.shape[1]
    return {
        "cka": gram_cka(x, y),
        "jaccard": jaccard_at_k(x, y, k),
        "mrr": mrr(x, y) if same_width else None,
        "mean_cosine": mean_cosine(x, y) if same_width else None,
    }
