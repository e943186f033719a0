"""Transforms around the projections: absolute ones fitted on the anchors, and per-subspace normalisations.

Absolute transforms are fitted on the anchors only, never on the batch, so a sample's representation does not
depend on what else is in its batch and the same statistics can be recomputed from any encoder's anchors.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .registry import Registry, registrar

AbsTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

ABS_TRANSFORMS: Registry[AbsTransform] = Registry("abs_transform")
SUBSPACE_NORMS: Registry[Callable[[int], nn.Module]] = Registry("subspace_norm")
register_abs_transform = registrar(ABS_TRANSFORMS)
register_subspace_norm = registrar(SUBSPACE_NORMS)


def get_abs_transform(name: str) -> AbsTransform:
    return ABS_TRANSFORMS.get(name)


@register_abs_transform("none")
def no_transform(x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x, anchors


@register_abs_transform("centering")
def centering(x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract the anchor mean: adds translation invariance to cosine."""
    mean = anchors.mean(dim=0, keepdim=True)
    return x - mean, anchors - mean


@register_abs_transform("standard")
def standard(x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor mean 0 and std 1 per dimension; constant dimensions keep std 1 (as sklearn does)."""
    mean = anchors.mean(dim=0, keepdim=True)
    std = anchors.std(dim=0, keepdim=True)
    std = torch.where(std < 10 * torch.finfo(std.dtype).eps, torch.ones_like(std), std)
    return (x - mean) / std, (anchors - mean) / std


def ledoit_wolf_shrinkage(centred: torch.Tensor) -> float:
    """Ledoit-Wolf intensity towards ``(tr S / D) I`` for centred samples (n, D), in float64 (sklearn's formula)."""
    x = centred.double()
    n, p = x.shape
    x2 = x**2
    diag = x2.sum(0) / n
    mu = diag.sum() / p
    beta_ = (x2.T @ x2).sum()
    delta_ = ((x.T @ x) ** 2).sum() / n**2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2 * mu * diag.sum() + p * mu**2) / p
    return float(min(beta, delta) / delta) if delta > 0 else 1.0


def whitening_map(anchors: torch.Tensor, shrinkage: float | str = "lw") -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean, W, shrinkage) with ``(x - mean) @ W`` whitened by the shrunk anchor covariance
    ``((1 - a) S + a tr(S)/D I)^(-1/2)``; float64, fitted on the anchors only."""
    a64 = anchors.double()
    mean = a64.mean(0, keepdim=True)
    centred = a64 - mean
    k, d = centred.shape
    cov = centred.T @ centred / max(k - 1, 1)
    amount = ledoit_wolf_shrinkage(centred) if shrinkage == "lw" else float(shrinkage)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"whitening shrinkage must be in [0, 1] or 'lw', got {shrinkage!r}")
    scale = torch.trace(cov) / d
    cov = (1 - amount) * cov + amount * scale * torch.eye(d, dtype=cov.dtype, device=cov.device)
    values, vectors = torch.linalg.eigh(cov)
    floor = values.max().clamp_min(1e-300) * 1e-12  # a singular covariance (k <= D without shrinkage) stays finite
    return mean, (vectors * values.clamp_min(floor).rsqrt()) @ vectors.T, amount


@register_abs_transform("whiten")
def whiten(x: torch.Tensor, anchors: torch.Tensor, shrinkage: float | str = "lw") -> tuple[torch.Tensor, torch.Tensor]:
    """Centre with the anchor mean and whiten with the anchor covariance (Ledoit-Wolf shrinkage by default).

    Without shrinkage (``shrinkage=0``, needs more anchors than dimensions) inner products and cosines of the
    whitened vectors are invariant to any invertible affine map of the embeddings; shrinkage (needed when k is close
    to or below D) trades part of that invariance for a stable inverse; ``shrinkage=1`` is centring + one isotropic
    scale. Computed in float64, returned in ``x``'s dtype.
    """
    mean, w, _ = whitening_map(anchors, shrinkage)
    return ((x.double() - mean) @ w).to(x.dtype), ((anchors.double() - mean) @ w).to(anchors.dtype)


# ------------------------------------------------------------------------------- statistics of fixed anchors
# The anchors are an argument of every forward, but fixed while a head trains on cached embeddings, predicts, or sits
# in a bridge: their statistics (mean, std, whitening) and transformed copy are computed once per anchors tensor and
# reused while that tensor is alive and unchanged (same version counter and storage). Anchors with a gradient (a
# trainable encoder embedding them in the step) are never memoised, so gradients are exactly as before.
_ANCHOR_FITS: dict[int, tuple[weakref.ref, tuple, dict]] = {}


def fitted_on_anchors(anchors: torch.Tensor, tag: tuple, fit: Callable[[], Any]) -> Any:
    """``fit()``, computed once per (anchors tensor, its version, ``tag``); ``fit`` must return new tensors only
    (never ``anchors`` or a view of it, which would keep the tensor alive through its memo)."""
    if torch.compiler.is_compiling() or (anchors.requires_grad and torch.is_grad_enabled()):
        return fit()  # a compiled graph computes it in-graph (the memo's stamp reads would break the graph)
    try:
        stamp = (anchors._version, anchors.data_ptr(), tuple(anchors.shape), torch.is_inference_mode_enabled())
    except RuntimeError:  # an inference tensor outside inference mode, or no storage (meta): nothing to key on
        return fit()
    key = id(anchors)
    entry = _ANCHOR_FITS.get(key)
    if entry is None or entry[0]() is not anchors or entry[1] != stamp:
        entry = (weakref.ref(anchors, lambda _, key=key: _ANCHOR_FITS.pop(key, None)), stamp, {})
        _ANCHOR_FITS[key] = entry
    fits = entry[2]
    if tag not in fits:
        fits[tag] = fit()
    return fits[tag]


def anchor_mean_std(anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and (unbiased) std of the anchors, floored at 1e-6: the aligned standardisation."""
    return anchors.mean(0), anchors.std(0).clamp_min(1e-6)


def _fit_centering(anchors: torch.Tensor) -> tuple[tuple, torch.Tensor]:
    mean = anchors.mean(dim=0, keepdim=True)
    return ("centering", mean), anchors - mean


def _fit_standard(anchors: torch.Tensor) -> tuple[tuple, torch.Tensor]:
    mean = anchors.mean(dim=0, keepdim=True)
    std = anchors.std(dim=0, keepdim=True)
    std = torch.where(std < 10 * torch.finfo(std.dtype).eps, torch.ones_like(std), std)
    return ("standard", mean, std), (anchors - mean) / std


def _fit_whiten(anchors: torch.Tensor) -> tuple[tuple, torch.Tensor]:
    mean, w, _ = whitening_map(anchors)
    return ("whiten", mean, w), ((anchors.double() - mean) @ w).to(anchors.dtype)


def apply_fitted(params: tuple, x: torch.Tensor) -> torch.Tensor:
    """The samples' side of a fitted absolute transform (the same formula as the transform itself)."""
    if params[0] == "centering":
        return x - params[1]
    if params[0] == "standard":
        return (x - params[1]) / params[2]
    return ((x.double() - params[1]) @ params[2]).to(x.dtype)


# Registered transforms whose anchor side can be fitted once: the function -> its fit (others run in full per call).
FITTED_ABS_TRANSFORMS: dict[Callable, Callable[[torch.Tensor], tuple[tuple, torch.Tensor]]] = {
    centering: _fit_centering,
    standard: _fit_standard,
    whiten: _fit_whiten,
}


register_subspace_norm("layernorm")(lambda k: nn.LayerNorm(k))
register_subspace_norm("batchnorm")(lambda k: nn.BatchNorm1d(k))
register_subspace_norm("none")(lambda k: nn.Identity())


def build_subspace_norm(name: str, num_anchors: int) -> nn.Module:
    return SUBSPACE_NORMS.get(name)(num_anchors)
