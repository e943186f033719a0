"""Embedding many padded rows fast and visibly: length-sorted batches, padding trimmed per batch, order restored.

Part of the remote-code set (torch and transformers only). Anchors are short texts of very different lengths
padded to the longest one; embedding them in input order pays attention over the padding of every batch. Sorting
rows by length first makes each batch nearly uniform, so trimming the all-padding columns removes most of it
(measured in ``benchmarks/embedding_sort.py``). Rows are independent under an attention mask, so the result equals
unsorted batching up to float reduction order (tested to 1e-6).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

EmbedFn = Callable[..., torch.Tensor]


def _progress_enabled() -> bool:
    """A bar only on a terminal, and never when transformers' verbosity is ``error`` or quieter."""
    try:
        from transformers.utils import logging as hf_logging

        if hf_logging.get_verbosity() >= hf_logging.ERROR or not hf_logging.is_progress_bar_enabled():
            return False
    except ImportError:  # pragma: no cover - transformers is a dependency of the remote-code set
        pass
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def length_order(attention_mask: torch.Tensor) -> torch.Tensor:
    """Row indices sorted by token count, longest first (a stable sort, so ties keep input order)."""
    lengths = attention_mask.sum(dim=1)
    return torch.sort(lengths, descending=True, stable=True).indices


def embed_in_slices(
    embed_slice: Callable[[int, int], torch.Tensor], n: int, batch_size: int, desc: str | None = None
) -> torch.Tensor:
    """``embed_slice(start, stop) -> (stop - start, dim)`` over ``n`` rows in stored order, with the same bar."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm  # a transformers dependency

    parts = []
    with tqdm(
        total=n, desc=desc or f"embedding {n} rows", unit="row", leave=False, disable=not _progress_enabled()
    ) as bar:
        for start in range(0, n, batch_size):
            parts.append(embed_slice(start, min(start + batch_size, n)))
            bar.update(parts[-1].shape[0])
    return torch.cat(parts)


def embed_in_length_order(
    embed_fn: EmbedFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int,
    desc: str | None = None,
    **extra_inputs: torch.Tensor,
) -> torch.Tensor:
    """``embed_fn(input_ids=..., attention_mask=...) -> (b, dim)`` over all rows, in length-sorted batches.

    Each batch is cut to its longest row (padding columns dropped); the output rows are in input order. ``desc``
    names what is embedded in the progress bar (e.g. "embedding 500 anchors with sentence-transformers/...").
    ``extra_inputs`` (e.g. ``token_type_ids``, shaped like ``input_ids``) are cut and reordered the same way.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = input_ids.shape[0]
    if n == 0:
        raise ValueError("nothing to embed: input_ids has 0 rows")
    order = length_order(attention_mask)
    lengths = attention_mask.sum(dim=1)
    # trim only right padding: cutting left padding would shift the positions of the real tokens
    right_padded = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
    parts = []
    from tqdm.auto import tqdm  # a transformers dependency

    with tqdm(
        total=n, desc=desc or f"embedding {n} rows", unit="row", leave=False, disable=not _progress_enabled()
    ) as bar:
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            width = max(int(lengths[rows].max()), 1) if right_padded else input_ids.shape[1]
            extra = {name: value[rows, :width] for name, value in extra_inputs.items()}
            parts.append(
                embed_fn(input_ids=input_ids[rows, :width], attention_mask=attention_mask[rows, :width], **extra)
            )
            bar.update(len(rows))
    embeddings = torch.cat(parts)
    restored = torch.empty_like(embeddings)
    restored[order] = embeddings
    return restored
