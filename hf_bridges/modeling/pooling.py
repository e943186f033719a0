"""Poolers: turn an encoder's output into one embedding per sample (registry, like open_clip's poolers)."""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .registry import Registry, registrar

Pooler = Callable[[Any, Optional[torch.Tensor]], torch.Tensor]
POOLINGS: Registry[Pooler] = Registry("pooling")
register_pooling = registrar(POOLINGS)


def get_pooling(name: str) -> Pooler:
    return POOLINGS.get(name)


def _tokens(outputs: Any) -> torch.Tensor:
    hidden = outputs.last_hidden_state
    if hidden.dim() == 4:  # vision feature maps (B, C, H, W) -> tokens (B, H*W, C)
        hidden = hidden.flatten(2).transpose(1, 2)
    return hidden


@register_pooling("mean")
def mean_pooling(outputs: Any, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Average of the token states that the attention mask keeps (padding ignored)."""
    hidden = _tokens(outputs)
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@register_pooling("cls")
def cls_pooling(outputs: Any, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    return _tokens(outputs)[:, 0]


@register_pooling("max")
def max_pooling(outputs: Any, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    hidden = _tokens(outputs)
    if attention_mask is not None:
        hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
    return hidden.max(dim=1).values


@register_pooling("pooler")
def pooler_output(outputs: Any, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None:
        raise ValueError("pooling='pooler' but the encoder returns no pooler_output; use pooling='mean' or 'cls'")
    return pooled.flatten(1)
