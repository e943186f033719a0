"""Label-free compatibility between two encoders' anchor spaces, and the attach-time choice of subspaces.

The same anchor inputs, embedded by the training encoder and by a new encoder, give two anchor-vs-anchor relative
matrices per projection. Where they agree (high linear CKA), that projection's subspace transfers; where they do
not, the head will see inputs unlike its training data. Choosing the subspaces from these scores uses no labels.

``stitch_report``: before any label is seen, how much the new encoder's anchor space looks like the training one.

For each projection the head uses, the anchor-vs-anchor relative matrix (k x k) is computed from the training
encoder's stored anchor embeddings and from the new encoder's, normalised the way the head normalises its subspaces
(LayerNorm: per row), and compared with linear CKA. The score is the mean
CKA over the subspaces the head will use (weighted by the subspace weights), so choosing subspaces at attach time
(``subspace_selection="auto"``) raises it when one projection transfers much worse than the others.

Two CKA readings, each used where it was measured to work (docs/heads-and-hub.md): the *score* compares the
matrices as the head sees them (after its per-subspace normalisation: it ranks encoder pairs like stitched accuracy),
while the *selection* of subspaces compares the raw anchor-vs-anchor matrices (the benchmark's rule: it keeps the
subspace that stitches best, where the normalised reading would not). The warning thresholds below come from the
same measurements on real encoders.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch

from ..logging import user_stacklevel
from ..modeling.head import cosine as _COSINE
from ..modeling.head import get_abs_transform, get_projection

if TYPE_CHECKING:
    from ..modeling.head import RelativeProductHead
    from ..modeling.modeling_bridge import BridgePreTrainedModel


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) between two (n, d1) and (n, d2) matrices, in float64."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs the same rows in both matrices, got {x.shape[0]} and {y.shape[0]}")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    if x.shape[0] < max(x.shape[1], y.shape[1]):  # fewer rows than columns: the same sums from the (n, n) Grams
        gx, gy = x @ x.T, y @ y.T  # ||y^T x||_F^2 = <x x^T, y y^T>, ||x^T x||_F = ||x x^T||_F
        cross, norm = (gx * gy).sum(), torch.linalg.matrix_norm(gx) * torch.linalg.matrix_norm(gy)
    else:
        cross = torch.linalg.matrix_norm(y.T @ x) ** 2
        norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def anchor_space(
    anchor_embeddings: torch.Tensor, projections: Sequence[str], abs_transform: str = "none"
) -> dict[str, torch.Tensor]:
    """Anchor-vs-anchor relative matrices (k, k), one per projection, as the head computes them."""
    _, anchors = get_abs_transform(abs_transform)(anchor_embeddings, anchor_embeddings)
    return {name: get_projection(name).fn(anchors, anchors) for name in projections}


# ---------------------------------------------------------------- scores linear in the anchor count (issue 21.2)
# A k x k anchor matrix per projection costs k^2 memory and its CKA k^3 time (16,384 anchors: 2 GiB per matrix). The
# cosine matrix U U^T has rank <= D, and so have its row / column standardisations, so its CKA is computed exactly
# from D x D products (O(k D^2)); the neighbour overlap (O(k^2 D) time, chunked) reads at most REPORT_MAX_ANCHORS
# anchors, evenly spaced, when there are more, and the other projections' k x k matrices (whose CKA costs k^3) at most
# DENSE_REPORT_ANCHORS; below these limits every anchor is read: the same scores as before.
REPORT_MAX_ANCHORS = 2048
DENSE_REPORT_ANCHORS = 1024


def report_subset(k: int, limit: int | None = None) -> torch.Tensor | None:
    """Indices of the anchors the quadratic scores read: ``None`` (all) up to ``limit`` (default
    ``REPORT_MAX_ANCHORS``), else ``limit`` evenly spaced ones (deterministic: the same anchors on every attach)."""
    limit = REPORT_MAX_ANCHORS if limit is None else limit
    if k <= limit:
        return None
    return torch.linspace(0, k - 1, limit, dtype=torch.float64).round().long()


def lowrank_cka(p: torch.Tensor, q: torch.Tensor, r: torch.Tensor, s: torch.Tensor) -> float:
    """``linear_cka(p @ q.T, r @ s.T)`` for (k, d) factors, exactly, in O(k d^2) time and O(k d + d^2) memory."""
    p, q, r, s = (t.double() for t in (p, q, r, s))
    pc, rc = p - p.mean(0, keepdim=True), r - r.mean(0, keepdim=True)  # the column centring of p q^T is H p q^T
    gq, gs = q.T @ q, s.T @ s
    m = rc.T @ pc  # ||(H r s^T)^T H p q^T||_F^2 = tr(m^T gs m gq) = sum((gs m) * (m gq))
    cross = ((gs @ m) * (m @ gq)).sum()
    fx, fy = (pc.T @ pc) @ gq, (rc.T @ rc) @ gs  # ||X_c^T X_c||_F^2 = tr(nx gq nx gq) = sum(f * f^T)
    norm = torch.sqrt((fx * fx.T).sum().clamp_min(0)) * torch.sqrt((fy * fy.T).sum().clamp_min(0))
    return float(cross / norm) if norm > 0 else 0.0


def _cosine_factors(anchors: torch.Tensor, subspace_norm: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, q) with ``p @ q.T`` the cosine anchor matrix (``subspace_norm=None``: raw), or as the head sees it."""
    u = torch.nn.functional.normalize(anchors.double(), dim=-1)
    if subspace_norm not in ("layernorm", "batchnorm"):
        return u, u
    # row i of U U^T minus its mean is u_i . (u_j - mean u); its variance u_i^T C u_i / (k - 1), C the centred Gram
    centred = u - u.mean(0, keepdim=True)
    var = ((u @ (centred.T @ centred)) * u).sum(1) / max(u.shape[0] - 1, 1)
    scaled = u / var.clamp_min(0).sqrt().clamp_min(1e-12)[:, None]
    return (scaled, centred) if subspace_norm == "layernorm" else (centred, scaled)  # batchnorm: the transpose


def projection_scores(
    source: torch.Tensor, target: torch.Tensor, names: Sequence[str], transform: str = "none", norm: str = "layernorm"
) -> tuple[dict[str, float], dict[str, float]]:
    """(selection scores: CKA of the raw anchor matrices, per-projection scores: as the head sees them, after the
    absolute ``transform`` and the subspace ``norm``) of the projections ``names``, memory and time linear in the
    anchor count."""
    _, source = get_abs_transform(transform)(source.double(), source.double())
    _, target = get_abs_transform(transform)(target.double(), target.double())
    subset = report_subset(source.shape[0], DENSE_REPORT_ANCHORS)
    selection, per_projection = {}, {}
    for name in names:
        if name == "cosine" and get_projection(name).fn is _COSINE:
            selection[name] = lowrank_cka(*_cosine_factors(source, None), *_cosine_factors(target, None))
            per_projection[name] = lowrank_cka(*_cosine_factors(source, norm), *_cosine_factors(target, norm))
            continue
        a, b = (source, target) if subset is None else (source[subset], target[subset])
        fn = get_projection(name).fn
        x, y = fn(a, a), fn(b, b)
        selection[name] = linear_cka(x, y)
        per_projection[name] = linear_cka(as_head_sees(x, norm), as_head_sees(y, norm))
        del x, y
    return selection, per_projection


@dataclass(frozen=True)
class CkaOperand:
    """A matrix (rows >= columns, e.g. a k x k anchor matrix) as :func:`linear_cka` uses it: centred in float64, with
    ``||X_c^T X_c||_F``. A stitch run scores each encoder's anchor matrices against its own and every other
    encoder's: prepared once, a score is one product (none for a matrix against itself), the same operations."""

    centred: torch.Tensor
    norm: torch.Tensor


def cka_operand(x: torch.Tensor) -> CkaOperand:
    """``x`` (rows >= columns) prepared for :func:`subspace_scores`."""
    if x.dim() != 2 or x.shape[0] < x.shape[1]:
        raise ValueError(f"a prepared CKA operand needs rows >= columns, got shape {tuple(x.shape)}")
    centred = x.double() - x.double().mean(dim=0, keepdim=True)
    return CkaOperand(centred, torch.linalg.matrix_norm(centred.T @ centred))


def _operand_cka(x: CkaOperand, y: CkaOperand) -> float:
    """:func:`linear_cka` in its column-Gram form from prepared operands, bit for bit."""
    if x.centred.shape[0] != y.centred.shape[0]:
        raise ValueError(
            f"linear_cka needs the same rows in both matrices, got {x.centred.shape[0]} and {y.centred.shape[0]}"
        )
    cross = (x.norm if x is y else torch.linalg.matrix_norm(y.centred.T @ x.centred)) ** 2
    norm = x.norm * y.norm
    return float(cross / norm) if norm > 0 else 0.0


def subspace_scores(
    source: Mapping[str, torch.Tensor | CkaOperand], target: Mapping[str, torch.Tensor | CkaOperand]
) -> dict[str, float]:
    """Per-projection linear CKA between two encoders' anchor spaces (same anchors, same order): the matrices, or
    both sides prepared once by :func:`cka_operand` (the same scores, bit for bit)."""
    missing = sorted(set(source) ^ set(target))
    if missing:
        raise ValueError(f"anchor spaces cover different projections: {missing}")
    scores = {}
    for name in source:
        x, y = source[name], target[name]
        if isinstance(x, CkaOperand) != isinstance(y, CkaOperand):
            raise ValueError(f"{name}: prepare both anchor spaces with cka_operand, or neither")
        scores[name] = _operand_cka(x, y) if isinstance(x, CkaOperand) else linear_cka(x, y)
    return scores


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


# In the gap between the pairs that kept their accuracy and those that did not, on the cautious side (a false warning
# costs a check): docs/heads-and-hub.md, benchmarks/stitch_report_ranking.py.
DEFAULT_THRESHOLD = 0.6


@dataclass
class StitchReport:
    """Label-free stitchability of a head on a new encoder; ``score`` is in [0, 1] (1: the same anchor space)."""

    score: float
    per_projection: dict[str, float]
    subspace_weights: list[float]
    selection_scores: dict[str, float]
    suggested_subspace_weights: list[float]
    threshold: float = DEFAULT_THRESHOLD
    training_encoder: str | None = None
    new_encoder: str | None = None
    num_anchors: int = 0
    notes: list[str] = field(default_factory=list)
    # aligned heads: the attach-time translation (map, residual, alpha) and component choice (components,
    # agreement per subset); their ``score`` is the anchor prediction agreement, not the CKA
    alignment: dict | None = None
    # the label-free expected accuracy on the new encoder (heads.estimate.AccuracyEstimate.to_dict())
    estimate: dict | None = None

    @property
    def compatible(self) -> bool:
        return self.score >= self.threshold

    @property
    def warning(self) -> str | None:
        """A plain-language warning when the score is under the threshold (or the expected accuracy is well
        under the head's own), else ``None``."""
        expected = _estimate_text(self.estimate, warning=True)
        if self.compatible:
            return f"Attaching to {self.new_encoder or 'the new encoder'}: {expected}" if expected else None
        if self.alignment is not None:
            # the default head keeps every component and fits its map on the anchors: no setting to hint at; the
            # score is a gate (measured: only encoders unrelated to the training one score under it)
            return (
                f"The anchor space of {self.new_encoder or 'the new encoder'} looks unrelated to the one this head was "
                f"trained on ({self.training_encoder or 'unknown encoder'}): stitch score {self.score:.2f} < "
                f"{self.threshold:.2f} (anchor CKA, neighbour overlap and held-out translation fit). Encoders that "
                "scored this low in the calibration (e.g. randomly initialised ones) kept little of the head's "
                "accuracy. Check a few labelled examples before relying on it, or retrain the head on this encoder."
                + (f" Label-free estimate: {_estimate_text(self.estimate)}." if self.estimate else "")
            )
        else:
            # hint only at what subspace_selection='auto' would really keep, and only when it is not in use already
            n = len(self.per_projection)
            suggested, current = self.suggested_subspace_weights, list(self.subspace_weights)[:n]
            keep = [name for name, w in zip(self.per_projection, suggested) if w > 0]
            hint = (
                ""
                if [float(w > 0) for w in current] == [float(w > 0) for w in suggested]
                else (f"try subspace_selection='auto' (it keeps {', '.join(keep)} here), ")
            )
        return (
            f"The anchor space of {self.new_encoder or 'the new encoder'} looks unlike the one this head was trained "
            f"on ({self.training_encoder or 'unknown encoder'}): stitch score {self.score:.2f} < {self.threshold:.2f}. "
            "Expect predictions well below the head's original accuracy. Check a few labelled examples before relying "
            f"on it, {hint}or retrain the head on this encoder."
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "compatible": self.compatible, "warning": self.warning}

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {value:.3f}" for name, value in self.per_projection.items())
        lines = [
            f"stitch score {self.score:.3f} (threshold {self.threshold:.2f}: "
            f"{'compatible' if self.compatible else 'NOT compatible'})",
            f"  training encoder: {self.training_encoder}   new encoder: {self.new_encoder}   anchors: {self.num_anchors}",
            f"  per-projection CKA: {parts}",
            "  selection CKA (raw anchor matrices): "
            + ", ".join(f"{name} {value:.3f}" for name, value in self.selection_scores.items()),
            f"  subspace weights in use: {self.subspace_weights}   label-free suggestion: {self.suggested_subspace_weights}",
        ]
        if self.alignment is not None:
            a = self.alignment
            lines.insert(
                1,
                f"  aligned component: {a['map']} map, held-out anchor fit {a.get('fit', 1.0):.3f} "
                f"(residual {a['residual']:.3f}); relative space: {a.get('relative_space', 'native')}; "
                f"components in use: {a.get('components')}; score parts: CKA {a.get('cka', 1.0):.3f}, "
                f"top-{KNN} neighbour Jaccard {a.get('knn_jaccard', 1.0):.3f}"
                + (f"; anchor agreement per subset: {a['agreement']}" if a.get("agreement") else ""),
            )
        if self.estimate is not None:
            lines.insert(1, f"  {_estimate_text(self.estimate)}")
        if self.warning:
            lines.append(f"  WARNING: {self.warning}")
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def _estimate_text(estimate: dict | None, warning: bool = False) -> str | None:
    """The estimate's line ("expected accuracy 0.93 (0.91–0.95) on this encoder; ..."), or its warning."""
    if estimate is None:
        return None
    from .estimate import AccuracyEstimate

    result = AccuracyEstimate(**estimate)
    return result.warning() if warning else result.line()


def weighted_score(per_projection: dict[str, float], projections: Sequence[str], weights: Sequence[float]) -> float:
    total = float(sum(weights))
    score = sum(w * per_projection[name] for name, w in zip(projections, weights)) / total
    return float(min(max(score, 0.0), 1.0))


def as_head_sees(matrix: torch.Tensor, subspace_norm: str) -> torch.Tensor:
    """The relative matrix after the head's per-subspace normalisation (its learned affine part is the same for
    both encoders, so it is left out): ``layernorm`` standardises each row, ``batchnorm`` each column."""
    if subspace_norm == "layernorm":
        return (matrix - matrix.mean(1, keepdim=True)) / matrix.std(1, keepdim=True).clamp_min(1e-12)
    if subspace_norm == "batchnorm":
        return (matrix - matrix.mean(0, keepdim=True)) / matrix.std(0, keepdim=True).clamp_min(1e-12)
    return matrix


def compute_stitch_report(
    training_anchor_embeddings: torch.Tensor,
    new_anchor_embeddings: torch.Tensor,
    projections: Sequence[str],
    abs_transform: str = "none",
    subspace_norm: str = "layernorm",
    subspace_weights: Sequence[float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    training_encoder: str | None = None,
    new_encoder: str | None = None,
    warn: bool = True,
) -> StitchReport:
    """Compare two encoders' embeddings of the same anchors (same order); warns (UserWarning) under ``threshold``."""
    if training_anchor_embeddings.shape[0] != new_anchor_embeddings.shape[0]:
        raise ValueError(
            f"the two anchor sets differ in size ({training_anchor_embeddings.shape[0]} vs "
            f"{new_anchor_embeddings.shape[0]}): a stitch report needs the same anchors embedded by both encoders"
        )
    projections = list(projections)
    selection_scores, per_projection = projection_scores(
        training_anchor_embeddings.detach().double().cpu(),
        new_anchor_embeddings.detach().double().cpu(),
        projections,
        abs_transform,
        subspace_norm,
    )
    weights = list(subspace_weights) if subspace_weights is not None else [1.0] * len(projections)
    report = StitchReport(
        score=weighted_score(per_projection, projections, weights),
        per_projection=per_projection,
        subspace_weights=weights,
        selection_scores=selection_scores,
        suggested_subspace_weights=select_subspaces(selection_scores, projections),
        threshold=threshold,
        training_encoder=training_encoder,
        new_encoder=new_encoder,
        num_anchors=int(training_anchor_embeddings.shape[0]),
    )
    if warn and report.warning:
        warnings.warn(report.warning, UserWarning, stacklevel=user_stacklevel())
    return report


# Aligned heads (the default head): between random encoders and every real pretrained pair (docs/method.md); a
# compatibility gate, not an accuracy predictor (that is heads/estimate.py).
ALIGNED_THRESHOLD = 0.15
AFFINE_EQUIVALENT = 0.9  # held-out fit above which the new encoder is an affine image of the training one
KNN = 10
COMPONENT_TOLERANCE = 0.004  # gate=True only: ties within this agreement go to the larger subset


def _standardised(anchors: torch.Tensor) -> torch.Tensor:
    a = anchors.double()
    return (a - a.mean(0)) / a.std(0).clamp_min(1e-6)


def knn_jaccard(source: torch.Tensor, target: torch.Tensor, k: int = KNN) -> float:
    """Mean Jaccard overlap of each anchor's top-k cosine neighbours among the anchors, in each space
    (anchor-standardised): do the two encoders agree on which anchors are alike?"""
    k = max(1, min(k, source.shape[0] - 1))

    def neighbours(z: torch.Tensor, rows: int = 512) -> torch.Tensor:
        z = torch.nn.functional.normalize(_standardised(z), dim=1)
        found = []
        for start in range(0, z.shape[0], rows):  # (rows, n) at a time: memory linear in n
            sim = z[start : start + rows] @ z.T
            sim[:, start : start + rows].fill_diagonal_(-2.0)
            found.append(sim.topk(k, dim=1).indices)
        return torch.cat(found)

    a, b = neighbours(source), neighbours(target)
    inter = (a.unsqueeze(2) == b.unsqueeze(1)).any(2).sum(1).double()
    return float((inter / (2 * k - inter)).mean())


def _degenerate(anchors: torch.Tensor) -> bool:
    """True when the anchors have (almost) no spread: the same rule as the attach-time zero-variance warning."""
    a = anchors.detach().double()
    spread = (a - a.mean(0, keepdim=True)).norm(dim=1).max()
    return not bool(torch.isfinite(spread)) or bool(spread <= 1e-6 * (a.norm(dim=1).max() + 1e-12))


def stitch_signals(source: torch.Tensor, target: torch.Tensor, fit: float) -> dict[str, float]:
    """The label-free stitch score of an aligned head: mean of the linear CKA of the anchor-standardised cosine
    anchor matrices, the top-10 neighbour Jaccard and the held-out translation fit (clipped at 0)."""
    if _degenerate(source) or _degenerate(target):
        # all anchors embedded (almost) identically: no anchor space to compare (two such spaces would otherwise
        # tie every neighbour and fit each other exactly, scoring ~0.67)
        return {"cka": 0.0, "knn_jaccard": 0.0, "stitch_score": 0.0}
    u, v = (torch.nn.functional.normalize(_standardised(z), dim=1) for z in (source, target))
    cka = lowrank_cka(u, u, v, v)  # linear_cka(u u^T, v v^T) without the k x k matrices
    subset = report_subset(source.shape[0])
    jaccard = knn_jaccard(source, target) if subset is None else knn_jaccard(source[subset], target[subset])
    score = (cka + jaccard + max(0.0, min(1.0, fit))) / 3.0
    return {"cka": cka, "knn_jaccard": jaccard, "stitch_score": float(score)}


def component_subsets(names: Sequence[str], base: Sequence[float]) -> dict[str, list[float]]:
    """Candidate component weights (projections, then aligned), the larger subset first: all, relative only,
    aligned only."""
    n = len(names)
    relative = "+".join(name for name, w in zip(names, base) if w > 0)
    subsets = {f"{relative}+aligned": [*base, 1.0]}
    if relative:
        subsets[relative] = [*base, 0.0]
    subsets["aligned"] = [0.0] * n + [1.0]
    return subsets


@torch.no_grad()
def align_head(
    head: RelativeProductHead,
    reference_anchors: torch.Tensor,
    new_anchors: torch.Tensor,
    reference_alignment: tuple[torch.Tensor, torch.Tensor] | None = None,
    base_weights: Sequence[float] | None = None,
    translation: str = "auto",
    relative_space: str = "auto",
    gate: bool = False,
    tolerance: float = COMPONENT_TOLERANCE,
    memo: dict | None = None,
) -> tuple[list[float], dict]:
    """Attach an aligned head to a new encoder from the anchors alone (no labels, no test batch).

    1. the head's aligned targets: the reference anchors (training encoder, or the encoder a stitched head was
       saved from, with its map ``reference_alignment``) in the training encoder's standardised space;
    2. the translation new -> that space (``translation``: ``auto`` = ridge-affine or thin orthogonal, whichever
       has the lower 5-fold held-out residual on the anchors), set as the head's map;
    3. the relative space (``relative_space="auto"``): ``translated`` (the relative component reads the mapped
       embeddings against the training anchors: exact when the new encoder is an affine image of the training
       one) when the held-out fit ``1 - residual`` is >= ``AFFINE_EQUIVALENT`` and the head standardises its
       inputs (``abs_transform='standard'``), else ``native`` (the new encoder's own anchors: keeps what a
       stronger encoder adds);
    4. every component is kept (``gate=True``: the subset whose anchor predictions agree best with the reference,
       measured not to help on real pairs); the stitch score (:func:`stitch_signals`).

    ``memo``: a dict kept by the caller for this one (reference anchors, new anchors) pair: the translation and the
    stitch signals depend on the anchors alone (and the head's width), so heads re-attached to the same pair (the
    stitch benchmark: every seed and method) reuse them.

    Returns (component weights, info): the JSON-safe record stored in ``HeadConfig.alignment``.
    """
    from .translation import fit_translation

    if relative_space not in ("auto", "native", "translated"):
        raise ValueError(f"unknown relative_space {relative_space!r}; valid: ['auto', 'native', 'translated']")
    was_training = head.training
    head.eval()
    try:
        device = head.aligned_weight.device
        ref = reference_anchors.detach().float().to(device)
        new = new_anchors.detach().float().to(device)
        stored = head.translated_anchors  # a stitched head saved in translated mode
        if reference_alignment is None:
            head.reset_alignment(ref.shape[1])
        else:
            head.set_alignment(*reference_alignment)
        target = head.aligned_inputs(ref, ref)
        relative_target = head.relative_slice(target)  # the relative anchors (an alignment set only fits the map)
        training_anchors = (
            stored.clone() if stored is not None and stored.shape == relative_target.shape else relative_target
        )
        n = len(head.projection_names)
        base = [float(w) for w in base_weights[:n]] if base_weights is not None else [1.0] * n
        if sum(base) <= 0:
            base = [1.0] * n
        head.set_relative_space(None)
        reference_prediction = None
        if gate and head.classifier is not None:
            reference_prediction = head(ref, ref, torch.tensor([*base, 1.0], device=device)).argmax(-1)
        if new.shape == ref.shape and torch.allclose(new, ref, rtol=2e-3, atol=2e-3):
            # the head's own encoder (the stored anchors are float16): keep its map instead of refitting noise
            info: dict = {"map": "identity", "residual": 0.0, "fit": 1.0}
            space = "native"
        else:
            key = ("translation", translation, head.aligned_dim, tuple(ref.shape))
            if memo is None or reference_alignment is not None or key not in memo:
                fitted = fit_translation(new.cpu(), target.cpu(), translation)
                if memo is not None and reference_alignment is None:
                    memo[key] = fitted
            else:
                fitted = memo[key]
            head.set_alignment(fitted.weight.float().clone(), fitted.bias.float().clone())
            info = dict(fitted.info, pairs=int(new.shape[0]))  # anchors + alignment set
            info["fit"] = 1.0 - min(v for k, v in info.items() if k in ("residual_orthogonal", "residual_affine"))
            space = relative_space
            if space == "auto":
                standard = getattr(head, "abs_transform_name", None) == "standard"
                space = "translated" if info["fit"] >= AFFINE_EQUIVALENT and standard else "native"
        if space == "translated":
            head.set_relative_space(training_anchors)
        weights = [*base, 1.0]
        agreement: dict[str, float] = {}
        if reference_prediction is not None:
            subsets = component_subsets(head.projection_names, base)
            for name, candidate in subsets.items():
                prediction = head(new, new, torch.tensor(candidate, device=device)).argmax(-1)
                agreement[name] = float((prediction == reference_prediction).float().mean())
            best = max(agreement.values())
            chosen = next(name for name in subsets if agreement[name] >= best - tolerance)
            weights = subsets[chosen]
            info["agreement"] = ", ".join(f"{k} {v:.3f}" for k, v in agreement.items())
        components = [name for name, w in zip(head.projection_names, weights) if w > 0]
        if weights[n] > 0:
            components.append("aligned")
        key = ("signals", info["fit"])
        if memo is None or key not in memo:
            signals = stitch_signals(ref.cpu(), new.cpu(), info["fit"])
            if memo is not None:
                memo[key] = signals
        info.update(memo[key] if memo is not None else signals)
        info.update(
            relative_space=space, components="+".join(components), compatible=info["stitch_score"] >= ALIGNED_THRESHOLD
        )
        return weights, {k: (float(v) if isinstance(v, float) else v) for k, v in info.items()}
    finally:
        head.train(was_training)


def stitch_reference(bridge: BridgePreTrainedModel) -> tuple | None:
    """What an aligned head's map is fitted against when the bridge switches encoder: the anchor embeddings held
    now (the training encoder's, or the encoder the head was last attached to, with that map). None for a head
    without an aligned component."""
    head = bridge.head
    if not getattr(head, "aligned", False):
        return None
    if not bool(bridge.anchors.is_fresh):
        raise ValueError(
            "this bridge's aligned head needs the anchor embeddings of the encoder it was trained on to fit the "
            "new encoder's map, and it holds none: attach the training encoder first, or set them with "
            "set_anchor_embeddings(...)"
        )
    return (
        bridge.anchors.embeddings.detach().clone(),
        (head.aligned_weight.detach().clone(), head.aligned_bias.detach().clone()),
    )


def fit_bridge_alignment(
    bridge: BridgePreTrainedModel, reference: tuple | None, translation: str, relative_space: str, gate: bool = False
) -> dict | None:
    """Fit the bridge's aligned map from its current anchor embeddings into ``reference``'s space ((anchor
    embeddings, their map or None), see :func:`stitch_reference`); the weights and the record go to its config."""
    if reference is None:
        return None
    weights, info = align_head(
        bridge.head,
        reference[0],
        bridge.anchors.embeddings,
        reference[1],
        base_weights=bridge.config.subspace_weights,
        translation=translation,
        relative_space=relative_space,
        gate=gate,
    )
    bridge.config.subspace_weights = weights
    bridge.config.head.alignment = info
    bridge.config.check()
    return info


def stitch_anchor_embeddings(
    bridge: BridgePreTrainedModel, embeddings: torch.Tensor, *, translation: str = "auto", relative_space: str = "auto"
) -> dict | None:
    """``bridge.stitch_anchor_embeddings``: another encoder's embeddings of the stored anchors replace the current
    ones, and an aligned head's map is fitted on them."""
    reference = stitch_reference(bridge)
    bridge.set_anchor_embeddings(embeddings)
    return fit_bridge_alignment(bridge, reference, translation, relative_space)
