"""Transforms around the projections: absolute ones fitted on the anchors, and per-subspace normalisations.

Absolute transforms are fitted on the anchors only, never on the batch, so a sample's representation does not
depend on what else is in its batch and the same statistics can be recomputed from any encoder's anchors.
"""
from __future__ import annotations

from typing import Callable

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


register_subspace_norm("layernorm")(lambda k: nn.LayerNorm(k))
register_subspace_norm("batchnorm")(lambda k: nn.BatchNorm1d(k))
register_subspace_norm("none")(lambda k: nn.Identity())


def build_subspace_norm(name: str, num_anchors: int) -> nn.Module:
    return SUBSPACE_NORMS.get(name)(num_anchors)
