"""Latent similarity between two spaces X, Y (n, d) whose rows are the same n samples.

- linear CKA (Kornblith et al., 2019): similarity of the two Gram structures, invariant to rotations and scaling;
- Jaccard@k: overlap of each sample's k nearest neighbours (cosine, itself excluded) in X and in Y;
- MRR: retrieving y_i among all rows of Y with x_i as the query (cosine); needs d_X == d_Y;
- mean cosine: mean of cos(x_i, y_i); needs d_X == d_Y.

Each space's (n, n) products are computed once (:func:`latent_space`) and shared by the scores: the cosine matrix
feeds Jaccard@k and, rescaled by the row norms and centred, the CKA's Gram matrix, so a pair costs three n x n x d
products (X X^T, Y Y^T, X Y^T) instead of five, and a space compared with several others (a head's reference
representation against every new encoder) is prepared once.

``precision``: the dtype of those three products. ``"float64"`` (the functions' default) computes every score in
float64. ``"float32"`` (a stitch run's default, ``latent.precision``) normalises the rows in float32 and makes the
three n x n x d products and the mean cosine's row products in float32 (about half their time, and no float64 copy
of the rows); the row norms, the CKA's rescaling, centring and sums stay float64, the MRR's ranks compare the float32
similarities. The scores then move in the 6th-7th digit (docs/performance.md measures it on a preset), and an exact
tie of neighbours or of ranks may break the other way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

_EPS = 1e-12  # F.normalize's default
_COSINE_EPS = 1e-8  # F.cosine_similarity's default
PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


def _cosine_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.double(), dim=-1) @ F.normalize(y.double(), dim=-1).T


@dataclass
class LatentSpace:
    """One space's rows, their norms, and what every score against it reuses (built lazily). ``precision``: the
    dtype of the n x n x d products (module docstring); in float32 the rows are normalised in float32 and the
    float64 unit rows are not made unless asked for."""

    rows: torch.Tensor  # float64; float32 (as given) when ``precision`` is float32
    norms: torch.Tensor  # float64, the divisors of ``unit``: rows = norms[:, None] * unit
    precision: str = "float64"
    _unit: torch.Tensor | None = field(default=None, repr=False)
    _operand: torch.Tensor | None = field(default=None, repr=False)
    _product: torch.Tensor | None = field(default=None, repr=False)
    _cosine: torch.Tensor | None = field(default=None, repr=False)
    _neighbours: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _centred: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def unit(self) -> torch.Tensor:
        """The rows unit-normalised in float64 (``F.normalize``)."""
        if self._unit is None:
            self._unit = F.normalize(self.rows.double(), dim=-1)
        return self._unit

    @property
    def operand(self) -> torch.Tensor:
        """The unit rows in the products' dtype: ``unit`` in float64, the float32 rows normalised in float32."""
        if self._operand is None:
            self._operand = self.unit if self.precision == "float64" else F.normalize(self.rows.float(), dim=-1)
        return self._operand

    @property
    def product(self) -> torch.Tensor:
        """(n, n) cosine similarities of the rows, in ``precision``."""
        if self._product is None:
            self._product = self.operand @ self.operand.T
        return self._product

    @property
    def cosine(self) -> torch.Tensor:
        """(n, n) cosine similarities of the rows, float64 (the product in ``precision``)."""
        if self._cosine is None:
            self._cosine = self.product.double()
        return self._cosine

    def neighbours(self, k: int) -> torch.Tensor:
        """(n, k): each row's k most similar rows (cosine), itself excluded."""
        if k not in self._neighbours:
            self._neighbours[k] = self.product.clone().fill_diagonal_(-torch.inf).topk(k, dim=1).indices
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


def latent_space(x: torch.Tensor | LatentSpace, precision: str | None = None) -> LatentSpace:
    """``x`` (n, d) prepared for :func:`latent_similarity` (a :class:`LatentSpace` is returned as is);
    ``precision``: the products' dtype, ``"float64"`` (None) or ``"float32"`` (module docstring)."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"unknown latent precision {precision!r}; valid: {list(PRECISIONS)}")
    if isinstance(x, LatentSpace):
        if precision is not None and x.precision != precision:
            raise ValueError(f"a {x.precision} latent space was given where {precision} products were asked for")
        return x
    if precision == "float32":  # no float64 copy of the rows: the norms accumulated in float64
        norms = torch.linalg.vector_norm(x, dim=-1, dtype=torch.float64).clamp_min(_EPS)
        return LatentSpace(rows=x if x.dtype == torch.float32 else x.float(), norms=norms, precision=precision)
    rows = x.double()
    norms = torch.linalg.vector_norm(rows, dim=-1).clamp_min(_EPS)
    return LatentSpace(rows=rows, norms=norms, _unit=F.normalize(rows, dim=-1))


def _precision(x: LatentSpace, y: LatentSpace) -> str:
    if x.precision != y.precision:
        raise ValueError(f"latent spaces of different precisions: {x.precision} and {y.precision}")
    return x.precision


def jaccard_at_k(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace, k: int = 10) -> float:
    x, y = latent_space(x), latent_space(y)
    _precision(x, y)
    if k >= x.rows.shape[0]:
        raise ValueError(f"Jaccard@{k} needs more than {k} samples, got {x.rows.shape[0]}")
    n = x.rows.shape[0]  # each row's neighbour sets as (n, n) masks: |A & B| per row, |A | B| = 2k - |A & B|
    a = torch.zeros(n, n, dtype=torch.bool).scatter_(1, x.neighbours(k), True)
    shared = (a & torch.zeros(n, n, dtype=torch.bool).scatter_(1, y.neighbours(k), True)).sum(1)
    scores = (shared.double() / (2 * k - shared).double()).tolist()  # int / int, correctly rounded, as in Python
    return float(sum(scores) / len(scores))  # summed in row order, as before


def mrr(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace) -> float:
    x, y = latent_space(x), latent_space(y)
    _precision(x, y)
    sim = x.operand @ y.operand.T  # ranks: the same comparisons in float32 as in float64 of the float32 values
    target = sim.diagonal().unsqueeze(1)
    ranks = 1 + (sim > target).sum(dim=1)  # ties count in the query's favour
    return float((1.0 / ranks.double()).mean())


def mean_cosine(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace) -> float:
    x, y = latent_space(x), latent_space(y)
    if _precision(x, y) == "float32":  # the unit rows' products, summed in float32, averaged in float64
        return float((x.operand * y.operand).sum(dim=-1).double().mean())
    if bool((x.norms < _COSINE_EPS).any()) or bool((y.norms < _COSINE_EPS).any()):
        return float(F.cosine_similarity(x.rows, y.rows, dim=-1).mean())
    # F.cosine_similarity is sum((x / |x|) * (y / |y|)) with each norm clamped at 1e-8: above it, the unit rows'
    # products, bit for bit, without normalising both (n, d) matrices again
    return float((x.unit * y.unit).sum(dim=-1).mean())


def gram_cka(x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace) -> float:
    """Linear CKA from the two spaces' centred Gram matrices (equal to ``heads.compatibility.linear_cka`` up to float64
    rounding, ~1e-15)."""
    x, y = latent_space(x), latent_space(y)
    _precision(x, y)
    (gx, nx), (gy, ny) = x.centred_gram(), y.centred_gram()
    norm = nx * ny
    return float((gx * gy).sum() / norm) if norm > 0 else 0.0


def latent_similarity(
    x: torch.Tensor | LatentSpace, y: torch.Tensor | LatentSpace, k: int = 10, precision: str | None = None
) -> dict[str, float | None]:
    """All four measures (Jaccard at ``k``); MRR and mean cosine are None when the widths differ. ``x`` / ``y`` may be
    :func:`latent_space` objects, to reuse one space's products against several others. ``precision``: the
    products' dtype (module docstring); None: that of a prepared space, else float64."""
    if precision is None:
        precision = next((s.precision for s in (x, y) if isinstance(s, LatentSpace)), None)
    x, y = latent_space(x, precision), latent_space(y, precision)
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
