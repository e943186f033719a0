"""Aggregations phi that merge the n normalised relative subspaces (B x n x k) into one representation.

Every aggregation accepts optional per-subspace ``weights`` (n,), rescaled to mean 1: a weight of 0 drops a
subspace. Training with random 0/1 weights ("subspace dropout") teaches the head to accept any subset, and the
weights chosen at attach time from the anchors alone (see ``compatibility.py``) pick the subspaces that transfer.
Register a new one with :func:`register_aggregation`; the class takes ``(num_subspaces, subspace_dim, width)``,
where ``width`` is the hidden width of aggregations with learned maps (``mlp_sum``, ``self_attention``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .registry import Registry

AGGREGATIONS: Registry[type[nn.Module]] = Registry("aggregation")


def register_aggregation(name: str, **metadata) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        AGGREGATIONS.register(name, cls, **metadata)
        cls.aggregation_name = name
        return cls

    return wrap


def build_aggregation(name: str, num_subspaces: int, subspace_dim: int, width: int | None = None) -> nn.Module:
    """``width`` (default: ``subspace_dim``) caps the learned maps: the paper's k->k maps cost 4*k^2 weights per
    aggregation, 26 MB at k=1280, while k->256 keeps a 1280-anchor head at 5 MB."""
    cls = AGGREGATIONS.get(name)
    return cls(num_subspaces, subspace_dim, min(width or subspace_dim, subspace_dim))


def normalise_weights(weights: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    """Weights rescaled so they average 1 over the n subspaces (all ones when None)."""
    if weights is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    weights = weights.to(dtype=like.dtype, device=like.device)
    return weights * (n / weights.sum())


@register_aggregation("concat")
class ConcatAggregation(nn.Module):
    """Cartesian product of the subspaces: output n*k."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        self.output_dim = num_subspaces * subspace_dim

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        return (subspaces * w[None, :, None]).flatten(1)


@register_aggregation("sum")
class SumAggregation(nn.Module):
    """Sum of the normalised subspaces (a DeepSet without the inner network): output k."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        self.output_dim = subspace_dim

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        return torch.einsum("bnk,n->bk", subspaces, w)


@register_aggregation("mlp_sum")
class MLPSumAggregation(nn.Module):
    """The paper's MLP+Sum: sum_i tanh(Linear_i(r_i)), one k->width map per subspace (k->k in the paper)."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        width = width or subspace_dim
        self.output_dim = width
        self.weight = nn.Parameter(torch.empty(num_subspaces, subspace_dim, width))
        self.bias = nn.Parameter(torch.zeros(num_subspaces, width))
        self.reset_parameters()

    def reset_parameters(self, init: Any = nn.init) -> None:
        """The one place that owns this init (``_init_weights`` of the bridge models calls it with transformers'
        guarded ``init``, which leaves loaded weights alone): uniform by fan-in (k), as ``nn.Linear``."""
        bound = self.weight.shape[1] ** -0.5
        init.uniform_(self.weight, -bound, bound)
        init.zeros_(self.bias)

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        # One batched matmul (subspaces as the batch dimension) instead of a Python loop of Linear layers.
        hidden = torch.tanh(torch.baddbmm(self.bias[:, None, :], subspaces.transpose(0, 1), self.weight))
        return torch.einsum("nbj,n->bj", hidden, w)


@register_aggregation("self_attention")
class SelfAttentionAggregation(nn.Module):
    """The subspaces as n tokens, one attention layer, summed over tokens.

    Tokens have width k as in the paper when ``width == k``; a smaller width first maps each subspace k->width
    (one linear map per subspace), which keeps the attention's 4*width^2 weights small for many anchors.
    """

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        width = width or subspace_dim
        self.output_dim = width
        self.token_maps = MLPSumAggregation(num_subspaces, subspace_dim, width) if width < subspace_dim else None
        self.attention = nn.MultiheadAttention(width, num_heads=1, batch_first=True)

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        if self.token_maps is not None:
            maps = self.token_maps
            subspaces = torch.baddbmm(maps.bias[:, None, :], subspaces.transpose(0, 1), maps.weight).transpose(0, 1)
        dropped = (w == 0).expand(subspaces.shape[0], -1)  # dropped subspaces are neither keys nor outputs
        out, _ = self.attention(subspaces, subspaces, subspaces, key_padding_mask=dropped, need_weights=False)
        return torch.einsum("bnk,n->bk", out, w)


@register_aggregation("weighted")
class WeightedAggregation(nn.Module):
    """A learned softmax-weighted average of the normalised subspaces; output k."""

    def __init__(self, num_subspaces: int, subspace_dim: int, width: int | None = None):
        super().__init__()
        self.output_dim = subspace_dim
        self.logits = nn.Parameter(torch.zeros(num_subspaces))

    def reset_parameters(self, init: Any = nn.init) -> None:
        init.zeros_(self.logits)  # a plain average to start with

    def forward(self, subspaces: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        w = normalise_weights(weights, subspaces.shape[1], subspaces)
        mix = torch.softmax(self.logits, dim=0) * w
        return torch.einsum("bnk,n->bk", subspaces, mix / mix.sum())
