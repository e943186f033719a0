"""The index bridge's candidate maps: the rotation of unit vectors (``fit_rotation``), a ridge map shrunk toward a
prior map, prior and strength chosen by k-fold (``fit_prior_ridge``), plain ridge with its strength by leave-one-out
(``fit_ridge``, aecp's map), blends of the rotation with plain ridge (``BlendedMap``) and the rotation fine-tuned
for ranking by InfoNCE over the paired texts (``fit_contrastive``); ``bridge._fit_side`` keeps one.

``heads.translation`` (the attach-time map of a head) fits orthogonal Procrustes or ridge shrunk toward zero in
anchor-standardised spaces, chosen by the k-fold residual over every standardised dimension. For retrieval that
standardisation and criterion cost recall (docs/retrieval.md: 0.25 vs 0.41 Recall@10 at 250 pairs on one task):
low-variance dimensions weigh as much as the ones a cosine ranks by, and heavy shrinkage toward the target's mean
scores well on residual while every query collapses toward one vector. So the map here works in the encoders' own
(centred) coordinates and shrinks toward a prior ``W0``::

    W = argmin ||Xs W - Xt||^2 + alpha ||W - W0||^2 = W0 + (Xs^T Xs + alpha I)^-1 Xs^T (Xt - Xs W0)

with ``W0`` in {0 (plain ridge), scaled orthogonal Procrustes (alpha -> inf gives it back), the identity (same
width only: two encoders of one family often share much of their space)}, prior and alpha chosen together by
k-fold on the pairs, scored by the held-out cosine of the *centred* mapped and true vectors; the fitted map is then scaled so
that its outputs are as long (around the target mean) as the true vectors. One eigendecomposition per fold serves
every alpha, as in ``translation.ridge_cv_residuals``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..heads.translation import fit_translation
from .encoders import IndexBridgeError

ALPHAS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # times the mean eigenvalue of Xs^T Xs
PRIORS = ("zero", "procrustes", "identity")


def _prior(kind: str, xs: np.ndarray, xt: np.ndarray) -> np.ndarray | None:
    """``W0`` between centred ``xs`` and ``xt`` (None where it is not defined)."""
    ds, dt = xs.shape[1], xt.shape[1]
    if kind == "zero":
        return np.zeros((ds, dt))
    if kind == "identity":
        return np.eye(ds) if ds == dt else None
    if kind == "procrustes":  # scaled orthogonal map, the narrower side zero-padded
        width = max(ds, dt)
        a = np.pad(xs, ((0, 0), (0, width - ds)))
        b = np.pad(xt, ((0, 0), (0, width - dt)))
        u, sv, vt = np.linalg.svd(a.T @ b)
        scale = sv.sum() / max((a**2).sum(), 1e-12)
        return (scale * (u @ vt))[:ds, :dt]
    raise ValueError(f"unknown prior {kind!r}; valid: {list(PRIORS)}")


def _centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float((num / np.maximum(den, 1e-12)).mean())


def select_prior_ridge(
    source: np.ndarray,
    target: np.ndarray,
    alphas: Sequence[float] = ALPHAS,
    priors: Sequence[str] = PRIORS,
    folds: int = 5,
    seed: int = 0,
) -> tuple[str, float, dict]:
    """(prior, relative alpha, scores): the best k-fold held-out centred cosine."""
    k = source.shape[0]
    folds = max(2, min(folds, k // 2))
    perm = np.random.default_rng(seed).permutation(k)
    scores: dict[tuple[str, float], float] = {}
    for i in range(folds):
        held = perm[i::folds]
        keep = np.setdiff1d(np.arange(k), held)
        ms, mt = source[keep].mean(0), target[keep].mean(0)
        xs, xt = source[keep] - ms, target[keep] - mt
        xh, th = source[held] - ms, target[held] - mt
        lam, q = np.linalg.eigh(xs.T @ xs)
        scale = max(lam.mean(), 1e-12)
        for kind in priors:
            w0 = _prior(kind, xs, xt)
            if w0 is None:
                continue
            right = q.T @ (xs.T @ (xt - xs @ w0))
            left, base = xh @ q, xh @ w0
            for alpha in alphas:
                mapped = base + left @ (right / (lam + alpha * scale)[:, None])
                scores[(kind, alpha)] = scores.get((kind, alpha), 0.0) + _centred_cosine(mapped, th) / folds
    kind, alpha = max(scores, key=scores.__getitem__)
    return kind, float(alpha), {f"{p}@{a:g}": round(v, 5) for (p, a), v in scores.items()}


def fit_prior_ridge(
    source: np.ndarray, target: np.ndarray, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(weight, bias, info)`` of ``x @ weight + bias`` (source -> target coordinates)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    kind, alpha, scores = select_prior_ridge(source, target, folds=folds, seed=seed)
    ms, mt = source.mean(0), target.mean(0)
    xs, xt = source - ms, target - mt
    w0 = _prior(kind, xs, xt)
    gram = xs.T @ xs
    scale = max(np.trace(gram) / gram.shape[0], 1e-12)
    w = w0 + np.linalg.solve(gram + alpha * scale * np.eye(gram.shape[0]), xs.T @ (xt - xs @ w0))
    # undo the shrinkage's loss of length: shrunk predictions sit near the target mean, and an inner-product index
    # would then rank every query by the documents' similarity to that mean (the same list for all)
    gain = float(np.linalg.norm(xt, axis=1).mean() / max(np.linalg.norm(xs @ w, axis=1).mean(), 1e-12))
    w = gain * w
    info = {
        "map": f"ridge toward {kind}",
        "prior": kind,
        "alpha": alpha,
        "gain": round(gain, 4),
        "cv_cosine": scores[f"{kind}@{alpha:g}"],
    }
    return w, mt - ms @ w, {**info, "cv_scores": scores}


RIDGE_ALPHAS = tuple(np.logspace(-4, 2, 25))  # times the mean eigenvalue of the centred source's Gram matrix


def fit_ridge(
    source: np.ndarray, target: np.ndarray, alphas: Sequence[float] = RIDGE_ALPHAS
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Plain ridge regression ``source -> target`` in the encoders' own coordinates (intercept not shrunk), alpha
    by exact leave-one-out squared error (scikit-learn's ``RidgeCV``): the map aecp's ``RidgeMapping`` fits, on the
    same pairs, with no output-length correction. It is the candidate that imitates the target encoder most closely
    (what retrieves better where the target encoder's own geometry is the better one). Leave-one-out, not GCV's
    approximation: with fewer pairs than dimensions GCV's denominator vanishes as alpha -> 0 and it picks the
    interpolating map. One SVD serves every alpha."""
    s, t = np.asarray(source, np.float64), np.asarray(target, np.float64)
    ms, mt = s.mean(0), t.mean(0)
    xs, xt = s - ms, t - mt
    u, sv, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ xt
    scale = max(float((sv**2).sum()) / xs.shape[1], 1e-12)
    loo = {}
    for alpha in alphas:
        shrink = sv**2 / (sv**2 + alpha * scale)
        leverage = (u**2) @ shrink + 1.0 / xs.shape[0]  # the intercept's share of the hat matrix
        residual = (xt - u @ (shrink[:, None] * uty)) / np.maximum(1.0 - leverage, 1e-12)[:, None]
        loo[alpha] = float((residual**2).sum())
    alpha = min(loo, key=loo.__getitem__)
    w = vt.T @ ((sv / (sv**2 + alpha * scale))[:, None] * uty)
    return w, mt - ms @ w, {"map": "ridge (leave-one-out)", "alpha": float(alpha)}


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_rotation(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Orthogonal Procrustes between the two encoders' *directions*: ``unit(x) @ R`` with ``R`` the rotation that
    best carries the L2-normalised source rows onto the L2-normalised target rows (uncentred, as aecp's Procrustes
    map, which it equals on encoders that normalise). Widths may differ: the narrower side is zero-padded, so ``R``
    is semi-orthogonal (orthonormal rows or columns). A cosine encoder's vector length carries no meaning its
    similarities use, and fitting on directions keeps long vectors of an encoder that does not normalise (e.g.
    paraphrase-MiniLM-L3-v2) from weighing more in the fit. It has no parameter to tune, and on the two MiniLMs and
    all-mpnet-base-v2 it retrieves at least as well as any ridge in most cells (docs/retrieval.md)."""
    a, b = unit_rows(np.asarray(source, np.float64)), unit_rows(np.asarray(target, np.float64))
    ds, dt = a.shape[1], b.shape[1]
    width = max(ds, dt)
    u, _, vt = np.linalg.svd(np.pad(a, ((0, 0), (0, width - ds))).T @ np.pad(b, ((0, 0), (0, width - dt))))
    rotation = (u @ vt)[:ds, :dt]
    return rotation, np.zeros(dt), {"map": "rotation (Procrustes of unit vectors)", "unit_input": True}


# The contrastive fine-tune's settings, fixed from the literature before any labelled retention was read (a
# temperature of 0.05 as SimCSE and sentence-transformers' MultipleNegativesRankingLoss (scale 20); Adam at its
# usual 1e-3; at most 200 full-batch steps, stopped on a 10 % held-out split's own InfoNCE loss (label-free); a weak
# pull toward the rotation so the held-out split, not the penalty, decides how far the map moves).
TEMPERATURE, LEARNING_RATE, MAX_STEPS, PATIENCE, HELD_SHARE, PROXIMITY = 0.05, 1e-3, 200, 10, 0.1, 0.01


def _info_nce(mapped: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of unit rows: each of ``rows`` (indices into both) against every target, and back."""
    logits = mapped[rows] @ target.T / temperature
    back = target[rows] @ mapped.T / temperature
    return 0.5 * (torch.nn.functional.cross_entropy(logits, rows) + torch.nn.functional.cross_entropy(back, rows))


def fit_contrastive(
    source: np.ndarray,
    target: np.ndarray,
    temperature: float = TEMPERATURE,
    lr: float = LEARNING_RATE,
    steps: int = MAX_STEPS,
    proximity: float = PROXIMITY,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The rotation (``fit_rotation``), then the whole map (weight and bias) fine-tuned for retrieval: a symmetric
    InfoNCE loss between ``unit(unit(x) @ W + b)`` and ``unit(y)`` over the paired texts (every other pair a
    negative), Adam, plus ``proximity * ||W - R||^2``. Every least-squares candidate fits vectors, not rankings;
    this one fits the ranking. Stopped at the step with the lowest InfoNCE of a seeded 10 % of the pairs held out
    (each against all the targets), so it needs no label; never worse than the rotation on that split."""
    rotation, bias0, _ = fit_rotation(source, target)
    a = torch.from_numpy(unit_rows(np.asarray(source, np.float64))).float()
    b = torch.from_numpy(unit_rows(np.asarray(target, np.float64))).float()
    n = a.shape[0]
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    held_n = max(2, round(HELD_SHARE * n))
    held, train = perm[:held_n].sort().values, perm[held_n:].sort().values
    r = torch.from_numpy(rotation).float()
    w = torch.nn.Parameter(r.clone())
    bias = torch.nn.Parameter(torch.from_numpy(bias0).float())
    opt = torch.optim.Adam([w, bias], lr=lr)
    b_train = b[train]
    train_rows = torch.arange(len(train))

    best, best_step, best_state, start = float("inf"), 0, None, None
    for step in range(steps + 1):
        mapped = torch.nn.functional.normalize(a @ w + bias, dim=1)  # one forward serves the split and the step
        with torch.no_grad():
            now = float(_info_nce(mapped.detach(), b, held, temperature))  # the map as it stands after `step` steps
        start = now if start is None else start
        if now < best:
            best, best_step, best_state = now, step, (w.detach().clone(), bias.detach().clone())
        elif step - best_step >= PATIENCE:
            break
        if step == steps:
            break
        opt.zero_grad()
        logits = mapped[train] @ b_train.T / temperature
        ce = torch.nn.functional.cross_entropy
        loss = 0.5 * (ce(logits, train_rows) + ce(logits.T, train_rows)) + proximity * ((w - r) ** 2).sum()
        loss.backward()
        opt.step()
    weight, b_out = (t.double().numpy() for t in best_state)
    info = {
        "map": "contrastive (rotation fine-tuned by InfoNCE)",
        "unit_input": True,
        "steps": best_step,
        "held_out_loss": round(best, 4),
        "rotation_held_out_loss": round(start, 4),
        "temperature": temperature,
    }
    return weight, b_out, info


KIND = "IndexBridge"
# 2: a map may L2-normalise its input (``unit_input``) and scale its output to ``length``; 3: a map may be a blend
# (``BlendedMap``: ``{side}.{i}.weight`` / ``.bias`` per member). A bridge without a blend is still written as 2.
FORMAT = 3
PLAIN_FORMAT = 2


class LinearMap:
    """``x @ weight + bias`` in float32 (a fitted translation with its source standardisation folded in); with
    ``unit_input`` the rows of ``x`` are L2-normalised first (the rotation map works on directions); with
    ``normalize`` every output row is scaled to ``length`` (1 for a target encoder that normalises, else its
    vectors' mean length): a map's output length reflects its shrinkage, not the text, and an inner-product index
    would otherwise rank a document by how confidently it was mapped."""

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray,
        normalize: bool,
        info: dict | None = None,
        *,
        unit_input: bool = False,
        length: float = 1.0,
    ):
        self.weight = np.ascontiguousarray(weight, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.normalize = bool(normalize)
        self.unit_input = bool(unit_input)
        self.length = float(length)
        self.info = dict(info or {})

    @classmethod
    def fit(
        cls, source: np.ndarray, target: np.ndarray, normalize: bool, translation: str = "prior", folds: int = 5
    ) -> LinearMap:
        """``normalize``: the target encoder normalises its vectors (outputs unit length; else its mean length)."""
        length = 1.0 if normalize else float(np.linalg.norm(np.asarray(target, np.float64), axis=1).mean())
        if translation in ("prior", "rotation", "ridge", "contrastive"):
            fitters = {
                "prior": lambda: fit_prior_ridge(source, target, folds),
                "ridge": lambda: fit_ridge(source, target),
                "contrastive": lambda: fit_contrastive(source, target),
            }
            fit = fitters.get(translation, lambda: fit_rotation(source, target))()
            info = dict(fit[2])
            unit_input = bool(info.pop("unit_input", False))
            return cls(*fit[:2], True, info, unit_input=unit_input, length=length)
        t = fit_translation(torch.from_numpy(source), torch.from_numpy(target), translation, folds)
        weight = t.weight / t.source_std[:, None]
        bias = t.bias - (t.source_mean / t.source_std) @ t.weight
        return cls(weight.numpy(), bias.numpy(), normalize, t.info)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.unit_input:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        y = x @ self.weight + self.bias
        if self.normalize:
            y *= self.length / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape


BLEND_MEMBERS = ("rotation", "ridge")


class BlendedMap:
    """``length * unit(sum_i w_i unit(member_i(x)))``: the normalised weighted mean of its members' unit outputs
    (the rotation and plain ridge, ``blend_weight`` on the rotation). The two keep different geometries (the
    source's directions vs the target encoder's), their errors are partly independent, and where neither is clearly
    better the mean of their directions retrieves better than either (docs/retrieval.md). Two small matmuls per batch;
    the output is plain float32 rows of the target's length, as a ``LinearMap`` with ``normalize``."""

    normalize = True

    def __init__(
        self, members: Sequence[LinearMap], weights: Sequence[float], length: float = 1.0, info: dict | None = None
    ) -> None:
        if len(members) != len(weights) or not members:
            raise IndexBridgeError(f"a blended map needs one weight per member: {len(members)} vs {len(weights)}")
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.length = float(length)
        self.info = dict(info or {})

    @classmethod
    def fit(cls, source: np.ndarray, target: np.ndarray, normalize: bool, weight: float, folds: int = 5) -> BlendedMap:
        """The rotation (``weight``) and plain ridge (``1 - weight``), each fitted on all the pairs."""
        length = 1.0 if normalize else float(np.linalg.norm(np.asarray(target, np.float64), axis=1).mean())
        members = [LinearMap.fit(source, target, True, kind, folds) for kind in BLEND_MEMBERS]  # unit outputs
        ridge = members[1].info
        info = {
            "map": f"blend of unit outputs: {weight:g} rotation + {1 - weight:g} plain ridge",
            "blend_weight": float(weight),
            "alpha": ridge.get("alpha"),
        }
        return cls(members, [weight, 1.0 - weight], length, info)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = sum(w * member(x) for w, member in zip(self.weights, self.members))  # members output unit rows
        return y * (self.length / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12))

    @property
    def shape(self) -> tuple[int, int]:
        return self.members[0].shape


def blend_kind(weight: float) -> str:
    """The candidate name of a blend (``_fit_side``'s ``info["candidates"]`` keys)."""
    return f"blend {weight:g}"


def blend_weight(kind: str) -> float | None:
    """The rotation's weight of a blend's candidate name (``blend_kind``'s inverse); None for any other map."""
    return float(kind.split(" ", 1)[1]) if kind.startswith("blend ") else None


def fit_candidate(
    source: np.ndarray, target: np.ndarray, normalize: bool, kind: str, folds: int = 5
) -> LinearMap | BlendedMap:
    """A candidate map by name: a ``LinearMap.fit`` translation or ``blend <weight>`` (``BlendedMap``)."""
    weight = blend_weight(kind)
    if weight is not None:
        return BlendedMap.fit(source, target, normalize, weight, folds)
    return LinearMap.fit(source, target, normalize, kind, folds)
