"""Similarity functions that turn absolute embeddings into relative ones.

Each projection maps samples ``x`` (B x D) and anchors ``a`` (k x D) to a (B x k) matrix. Every function is
registered once with :func:`register_projection`, together with the class of transformations it is invariant to
(applied to samples and anchors together); adding a projection is that one decorated function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .pairwise import l1_distance, linf_distance
from .registry import Registry

ProjectionFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Projection:
    name: str
    fn: ProjectionFn
    invariant_to: str


PROJECTIONS: Registry[Projection] = Registry("projection")


def register_projection(name: str, invariant_to: str, **metadata) -> Callable[[ProjectionFn], ProjectionFn]:
    """Decorator: make ``fn(x, anchors) -> (B, k)`` available under ``name`` in every config."""

    def wrap(fn: ProjectionFn) -> ProjectionFn:
        PROJECTIONS.register(name, Projection(name, fn, invariant_to), invariant_to=invariant_to, **metadata)
        return fn

    return wrap


def get_projection(name: str) -> Projection:
    return PROJECTIONS.get(name)


@register_projection("cosine", invariant_to="orthogonal maps (rotations, reflections) and isotropic scaling")
def cosine(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # F.normalize clamps the norm at eps, so a zero vector gives similarity 0 instead of a division by zero.
    return F.normalize(x, dim=-1) @ F.normalize(anchors, dim=-1).mT


@register_projection("angular", invariant_to="orthogonal maps and isotropic scaling (angle in [0, 1])")
def angular(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # clamp strictly inside [-1, 1]: arccos has an infinite gradient at the ends.
    return torch.arccos(cosine(x, anchors).clamp(-1 + 1e-7, 1 - 1e-7)) / torch.pi


@register_projection("euclidean", invariant_to="isometries: orthogonal maps and translations")
def euclidean(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # |x|^2 - 2 x.a + |a|^2 as one GEMM (on par with torch.cdist p=2, which takes the same path for > 25 rows:
    # benchmarks/projections_vs_cdist.py); the clamp keeps the gradient finite where a sample is an anchor.
    squared = (x * x).sum(-1, keepdim=True) - 2 * x @ anchors.mT + (anchors * anchors).sum(-1)
    return squared.clamp_min(1e-12).sqrt()


def _cdist(x: torch.Tensor, anchors: torch.Tensor, p: float) -> torch.Tensor:
    """cdist for what the CPU kernel does not cover (batched inputs, other devices); half precision upcast."""
    dtype = torch.promote_types(x.dtype, anchors.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        return torch.cdist(x.float(), anchors.float(), p=p).to(dtype)
    return torch.cdist(x, anchors, p=p)


def _pairwise_cpu(x: torch.Tensor, anchors: torch.Tensor) -> bool:
    return x.dim() == 2 and anchors.dim() == 2 and x.device.type == "cpu" and anchors.device.type == "cpu"


@register_projection("l1", invariant_to="coordinate permutations with sign flips, and translations")
def l1(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    # CPU: a chunked broadcast kernel (pairwise.py), 3x faster than torch.cdist p=1 in forward, never a (B, k, D)
    # tensor; float16/bfloat16 are computed in float32 (x and anchors upcast: O((B + k) D) extra memory).
    if _pairwise_cpu(x, anchors):
        return l1_distance(x, anchors)
    return _cdist(x, anchors, 1.0)


@register_projection("linf", invariant_to="coordinate permutations with sign flips, and translations")
def linf(x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    if _pairwise_cpu(x, anchors):
        return linf_distance(x, anchors)
    return _cdist(x, anchors, float("inf"))
