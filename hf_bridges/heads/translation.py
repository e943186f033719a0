"""Latent-space translation fitted on the anchors alone (Maiorca et al., NeurIPS 2023), torch only.

A head's aligned component lives in the training encoder's anchor-standardised space. To use it on another encoder,
the new encoder's anchor embeddings (source) are mapped onto the head's (target) by either

* ``orthogonal``: Procrustes in anchor-standardised spaces (each space with its own anchor mean/std; the narrower
  one zero-padded), thin ``R = U_r V_r^T`` from ``svd(Zs^T Zt)`` over its non-null singular values (directions the
  anchors do not span map to the target's anchor mean), or
* ``affine``: ridge least squares ``Zs W = Zt`` between the anchor-standardised spaces (alpha chosen by k-fold on the
  anchors; both sides are centred, so an unshrunk bias would be 0),

and ``auto`` keeps the one with the lower k-fold held-out residual on the anchors. Every fit is float64 and the result
is folded into one ``std_source(x) @ weight + bias`` map, which the head stores as buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

TRANSLATIONS = ("auto", "orthogonal", "affine")
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4)
NULL_TOLERANCE = 1e-6  # singular values below this fraction of the largest span no anchor direction


def anchor_stats(anchors: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the anchors (the only statistics the aligned component ever uses)."""
    a = anchors.double()
    return a.mean(0), a.std(0).clamp_min(eps)


def standardise(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    mean, std = anchor_stats(anchors)
    return (x.double() - mean) / std


@dataclass
class Translation:
    """``std_source(x) @ weight + bias``: source embeddings -> target coordinates (float64 buffers)."""

    weight: torch.Tensor  # (D_source, D_target)
    bias: torch.Tensor  # (D_target,)
    kind: str
    source_mean: torch.Tensor
    source_std: torch.Tensor
    alpha: float | None = None
    info: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.source_mean) / self.source_std) @ self.weight + self.bias


def _check(source: torch.Tensor, target: torch.Tensor) -> None:
    if source.dim() != 2 or target.dim() != 2 or source.shape[0] != target.shape[0]:
        raise ValueError(
            f"a translation needs the same anchors in both spaces, got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    if source.shape[0] < 3:
        raise ValueError(f"a translation needs at least 3 anchors, got {source.shape[0]}")


def fit_orthogonal(source: torch.Tensor, target: torch.Tensor) -> Translation:
    """Orthogonal Procrustes between the anchor-standardised spaces (zero padding for different widths)."""
    _check(source, target)
    ms, ss = anchor_stats(source)
    mt, st = anchor_stats(target)
    ds, dt = source.shape[1], target.shape[1]
    width = max(ds, dt)
    zs = torch.nn.functional.pad((source.double() - ms) / ss, (0, width - ds))
    zt = torch.nn.functional.pad((target.double() - mt) / st, (0, width - dt))
    u, sv, v = _svd_of_cross(zs, zt)
    # thin R = U_r V_r^T over the non-null singular directions: outside the anchors' span (k - 1 < D, or a constant
    # dimension) the full U V^T is arbitrary, and float16 anchors flip it (FINDINGS: 33 % output change for mpnet)
    rank = int((sv > sv[0] * NULL_TOLERANCE).sum()) if sv.numel() and sv[0] > 0 else 0
    rotation = u[:, :rank] @ v[:, :rank].T
    return Translation(rotation[:ds, :dt] * st, mt.clone(), "orthogonal", ms, ss)


def _svd_of_cross(zs: torch.Tensor, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, S, V`` of ``zs^T zt`` (width x width). Wider than the anchor count k, it has rank <= k: from the QR
    factors of ``zs^T`` and ``zt^T``, ``zs^T zt = Qs (Rs Rt^T) Qt^T`` needs only a k x k SVD (a 1280-d encoder with
    a few hundred anchors: ~50x faster than the full one, same non-null directions)."""
    k, width = zs.shape
    if width <= k:
        u, sv, vt = torch.linalg.svd(zs.T @ zt)
        return u, sv, vt.T
    qs, rs = torch.linalg.qr(zs.T)
    qt, rt = torch.linalg.qr(zt.T)
    u, sv, vt = torch.linalg.svd(rs @ rt.T)
    return qs @ u, sv, qt @ vt.T


def fit_affine(
    source: torch.Tensor,
    target: torch.Tensor,
    alpha: float | None = None,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    folds: int = 5,
) -> Translation:
    """Ridge least-squares affine map in anchor-standardised spaces; ``alpha=None``: chosen by k-fold on the anchors."""
    _check(source, target)
    cv_residual = None
    if alpha is None:
        errors = ridge_cv_residuals(source, target, alphas, folds)
        best = min(range(len(alphas)), key=errors.__getitem__)
        alpha, cv_residual = float(alphas[best]), errors[best]
    ms, ss = anchor_stats(source)
    mt, st = anchor_stats(target)
    zs = (source.double() - ms) / ss
    zt = (target.double() - mt) / st
    # Both sides have zero mean over these anchors, so the unshrunk bias of [zs, 1] W = zt is exactly 0 and the map is
    # plain ridge. Solve it in the smaller of its two forms (push-through identity): D x D (primal) or, for an encoder
    # wider than the anchor count (a 1280-d CNN, a 4096-d LLM), k x k (dual) -- 1281^2 solves x 36 fits took 8 s.
    k, d = zs.shape
    if d <= k:
        w = torch.linalg.solve(zs.T @ zs + alpha * torch.eye(d, dtype=zs.dtype), zs.T @ zt)
    else:
        w = zs.T @ torch.linalg.solve(zs @ zs.T + alpha * torch.eye(k, dtype=zs.dtype), zt)
    info = {} if cv_residual is None else {"residual_affine": cv_residual}
    return Translation(w * st, mt.clone(), "affine", ms, ss, alpha=alpha, info=info)


def _folds(k: int, folds: int, seed: int) -> tuple[int, torch.Tensor]:
    return max(2, min(folds, k // 2)), torch.randperm(k, generator=torch.Generator().manual_seed(seed))


def ridge_cv_residuals(
    source: torch.Tensor, target: torch.Tensor, alphas: Sequence[float], folds: int = 5, seed: int = 0
) -> list[float]:
    """``kfold_residual`` of ``fit_affine(alpha=a)`` for every ``a`` at once: one eigendecomposition of each fold's
    Gram matrix serves every alpha (``(G + aI)^-1 = Q diag(1 / (l + a)) Q^T``) instead of one solve per alpha and
    fold (a 1280-d encoder with 1,000 pairs: 7.5 s -> 1.8 s, benchmarks/ridge_cv.py)."""
    k = source.shape[0]
    folds, perm = _folds(k, folds, seed)
    _, st_all = anchor_stats(target)
    t64 = target.double()
    num, den = [0.0] * len(alphas), 0.0
    for i in range(folds):
        held = perm[i::folds]
        keep = torch.ones(k, dtype=torch.bool)
        keep[held] = False
        ms, ss = anchor_stats(source[keep])
        mt, st = anchor_stats(target[keep])
        zs = (source[keep].double() - ms) / ss
        zt = (t64[keep] - mt) / st
        zh = (source[held].double() - ms) / ss
        if zs.shape[1] <= zs.shape[0]:  # primal: W = Q diag(1/(l+a)) Q^T zs^T zt
            lam, q = torch.linalg.eigh(zs.T @ zs)
            left, right = zh @ q, q.T @ (zs.T @ zt)
        else:  # dual: W = zs^T Q diag(1/(l+a)) Q^T zt
            lam, q = torch.linalg.eigh(zs @ zs.T)
            left, right = zh @ (zs.T @ q), q.T @ zt
        for j, alpha in enumerate(alphas):
            mapped = (left @ (right / (lam + alpha)[:, None])) * st + mt
            num[j] += (((mapped - t64[held]) / st_all) ** 2).sum().item()
        den += (((t64[held] - t64[keep].mean(0)) / st_all) ** 2).sum().item()
    return [n / den if den > 0 else float("inf") for n in num]


def kfold_residual(
    source: torch.Tensor,
    target: torch.Tensor,
    fitter: Callable[[torch.Tensor, torch.Tensor], Translation] = fit_orthogonal,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Held-out fraction of unexplained target variance (target's anchor-standardised space), k-fold on the anchors."""
    k = source.shape[0]
    folds, perm = _folds(k, folds, seed)
    _, st = anchor_stats(target)
    t64 = target.double()
    num = den = 0.0
    for i in range(folds):
        held = perm[i::folds]
        keep = torch.ones(k, dtype=torch.bool)
        keep[held] = False
        fitted = fitter(source[keep], target[keep])
        num += (((fitted(source[held]) - t64[held]) / st) ** 2).sum().item()
        den += (((t64[held] - t64[keep].mean(0)) / st) ** 2).sum().item()
    return num / den if den > 0 else float("inf")


def fit_translation(source: torch.Tensor, target: torch.Tensor, method: str = "auto", folds: int = 5) -> Translation:
    """The attach-time map source -> target: ``auto`` keeps orthogonal unless ridge-affine has the lower k-fold
    held-out residual on the anchors. ``info`` holds both residuals (``auto``) and the chosen map."""
    if method not in TRANSLATIONS:
        raise ValueError(f"unknown translation {method!r}; valid: {list(TRANSLATIONS)}")
    info: dict = {}
    if method in ("auto", "orthogonal"):
        info["residual_orthogonal"] = kfold_residual(source, target, fit_orthogonal, folds)
    if method in ("auto", "affine"):
        affine = fit_affine(source, target, folds=folds)  # its info: the chosen alpha's k-fold residual
        info["residual_affine"] = affine.info["residual_affine"]
        info["alpha"] = affine.alpha
    if method == "orthogonal" or (method == "auto" and info["residual_orthogonal"] <= info["residual_affine"]):
        chosen = fit_orthogonal(source, target)
    else:
        chosen = affine
    info["map"] = chosen.kind
    info["residual"] = info[f"residual_{chosen.kind}"]
    chosen.info = info
    return chosen
