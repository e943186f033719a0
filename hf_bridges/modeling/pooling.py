"""Poolers: turn an encoder's output into one embedding per sample (registry, like open_clip's poolers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .registry import Registry, registrar

Pooler = Callable[[Any, torch.Tensor | None], torch.Tensor]
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
def mean_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average of the token states that the attention mask keeps (padding ignored)."""
    hidden = _tokens(outputs)
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@register_pooling("cls")
def cls_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    return _tokens(outputs)[:, 0]


@register_pooling("max")
def max_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    hidden = _tokens(outputs)
    if attention_mask is not None:
        hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
    return hidden.max(dim=1).values


@register_pooling("pooler")
def pooler_output(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None:
        raise ValueError("pooling='pooler' but the encoder returns no pooler_output; use pooling='mean' or 'cls'")
    return pooled.flatten(1)


# sentence-transformers' other pooling modes (its Pooling module, padded path), so ST models reproduce exactly.
def _mask_or_ones(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    return attention_mask


@register_pooling("mean_sqrt_len")
def mean_sqrt_len_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Sum of the kept token states divided by sqrt(number kept) (sentence-transformers ``mean_sqrt_len_tokens``)."""
    hidden = _tokens(outputs)
    mask = _mask_or_ones(hidden, attention_mask).unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0).sqrt()


@register_pooling("weightedmean")
def weightedmean_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Position-weighted mean, weights 1..n counted from the first kept token (sentence-transformers
    ``weightedmean``, as in SGPT): later tokens of a causal encoder have seen more of the text."""
    hidden = _tokens(outputs)
    mask = _mask_or_ones(hidden, attention_mask)
    weights = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
    weights = weights - mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1).to(hidden.dtype)
    weighted = mask.unsqueeze(-1).to(hidden.dtype) * weights
    return (hidden * weighted).sum(dim=1) / weighted.sum(dim=1).clamp(min=1e-9)


@register_pooling("lasttoken")
def lasttoken_pooling(outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """State of the last kept token, for left or right padding (sentence-transformers ``lasttoken``; decoder
    embedders such as e5-mistral or gte-Qwen)."""
    hidden = _tokens(outputs)
    mask = _mask_or_ones(hidden, attention_mask)
    kept, flipped = mask.flip(1).max(dim=1)
    last = torch.where(kept == 0, torch.zeros_like(flipped), hidden.shape[1] - 1 - flipped)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
