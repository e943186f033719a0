"""Embedding many padded rows fast and visibly: length-sorted batches, padding trimmed per batch, order restored.

Part of the remote-code set (torch and transformers only). Texts of very different lengths padded to the longest
one pay attention over the padding of every batch. Sorting ALL rows by length first (not within windows of a
batch: a window of 32 short texts is as ragged as the input) makes each batch nearly uniform, so trimming the
all-padding columns removes most of it (measured in ``benchmarks/embedding_sort.py``). Rows are independent under
an attention mask, so the result equals unsorted batching up to float reduction order (tested to 1e-6).

Progress bars follow the ecosystem's switches, not the terminal: ``HF_HUB_DISABLE_PROGRESS_BARS``,
``huggingface_hub.utils.disable_progress_bars()`` (also for the group ``"hf_bridges"`` alone) and
``transformers.utils.logging.disable_progress_bar()``; ``tqdm.auto`` draws a widget in a notebook and plain lines
in a log file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence

import torch
from transformers.utils import logging

EmbedFn = Callable[..., torch.Tensor]
PROGRESS_GROUP = "hf_bridges"  # huggingface_hub.utils.disable_progress_bars("hf_bridges") silences only ours

logger = logging.get_logger(__name__)


def progress_enabled(show: bool | None = None) -> bool:
    """``show`` when given (a caller's ``show_progress_bar=``); else on unless disabled through transformers or
    huggingface_hub (globally, by ``HF_HUB_DISABLE_PROGRESS_BARS``, or for the ``"hf_bridges"`` group)."""
    if show is not None:
        return bool(show)
    if not logging.is_progress_bar_enabled():
        return False
    try:
        from huggingface_hub.utils import are_progress_bars_disabled  # a transformers dependency
    except ImportError:  # pragma: no cover
        return True
    return not are_progress_bars_disabled(PROGRESS_GROUP)


def _bar(total: int, desc: str, show: bool | None):
    """A ``tqdm.auto`` bar (a transformers dependency): a widget in a notebook, lines in a log file, where its
    final state stays (on a terminal it is cleared when done)."""
    from tqdm.auto import tqdm

    leave = not bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(total=total, desc=desc, unit="row", leave=leave, disable=not progress_enabled(show))


def length_order(attention_mask: torch.Tensor) -> torch.Tensor:
    """Row indices sorted by token count, longest first (a stable sort, so ties keep input order)."""
    lengths = attention_mask.sum(dim=1)
    return torch.sort(lengths, descending=True, stable=True).indices


def embed_in_slices(
    embed_slice: Callable[[int, int], torch.Tensor],
    n: int,
    batch_size: int,
    desc: str | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """``embed_slice(start, stop) -> (stop - start, dim)`` over ``n`` rows in stored order, with the same bar."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    desc = desc or f"embedding {n} rows"
    logger.info(f"{desc} ({n} rows, batches of {batch_size})")
    parts = []
    with _bar(n, desc, progress) as bar:
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
    progress: bool | None = None,
    **extra_inputs: torch.Tensor,
) -> torch.Tensor:
    """``embed_fn(input_ids=..., attention_mask=...) -> (b, ...)`` over all rows of padded tensors, in
    length-sorted batches.

    Each batch is cut to its longest row (padding columns dropped); the output rows are in input order. ``desc``
    names what is embedded in the progress bar and the log (e.g. "embedding 500 anchors with sentence-transformers/
    ..."); ``progress``: force the bar on or off (``None``: the ecosystem switches). ``extra_inputs`` (e.g.
    ``token_type_ids``, shaped like ``input_ids``) are cut and reordered the same way.
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
    desc = desc or f"embedding {n} rows"
    logger.info(f"{desc} ({n} rows, longest {int(lengths.max())} tokens, batches of {batch_size})")
    parts = []
    with _bar(n, desc, progress) as bar:
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            width = max(int(lengths[rows].max()), 1) if right_padded else input_ids.shape[1]
            extra = {name: value[rows, :width] for name, value in extra_inputs.items()}
            parts.append(
                embed_fn(input_ids=input_ids[rows, :width], attention_mask=attention_mask[rows, :width], **extra)
            )
            bar.update(len(rows))
    return _restore(parts, order)


def pad_rows(
    rows: Mapping[str, Sequence[Sequence[int]]], pad_values: Mapping[str, int], padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Token rows of different lengths (a tokenizer's output with ``padding=False``) as padded ``long`` tensors,
    as ``tokenizer.pad`` would: each key filled with ``pad_values[key]`` (``attention_mask`` with 0, others
    without an entry with 0) on ``padding_side``."""
    width = max((len(row) for row in rows["input_ids"]), default=0)
    out = {}
    for key, values in rows.items():
        fill = 0 if key == "attention_mask" else pad_values.get(key, 0)
        tensor = torch.full((len(values), width), fill, dtype=torch.long)
        for i, row in enumerate(values):
            if len(row):
                where = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
                tensor[i, where] = torch.as_tensor(row, dtype=torch.long)
        out[key] = tensor
    return out


def embed_rows_in_length_order(
    embed_fn: EmbedFn,
    rows: Mapping[str, Sequence[Sequence[int]]],
    batch_size: int,
    pad_values: Mapping[str, int],
    *,
    padding_side: str = "right",
    desc: str | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``embed_fn(**batch) -> (b, ...)`` over a WHOLE list of token rows, in length-sorted batches.

    ``rows``: the tokenizer's output for every input at once, without padding (``tokenizer(texts,
    truncation=True, max_length=...)``: tokenised once). All rows are sorted by length, longest first; each batch
    of ``batch_size`` is padded to its own longest row (``pad_rows``: ``pad_values`` such as ``{"input_ids":
    tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id}``) and moved to ``device``; the output
    rows are in input order. ``desc`` / ``progress``: as in :func:`embed_in_length_order`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = rows["input_ids"]
    n = len(ids)
    if n == 0:
        raise ValueError("nothing to embed: 0 rows")
    lengths = torch.tensor([len(row) for row in ids])
    order = torch.sort(lengths, descending=True, stable=True).indices
    desc = desc or f"embedding {n} rows"
    logger.info(f"{desc} ({n} rows, longest {int(lengths.max())} tokens, batches of {batch_size})")
    parts = []
    with _bar(n, desc, progress) as bar:
        for start in range(0, n, batch_size):
            picked = order[start : start + batch_size].tolist()
            batch = pad_rows(
                {key: [values[i] for i in picked] for key, values in rows.items()}, pad_values, padding_side
            )
            parts.append(embed_fn(**{key: value.to(device) for key, value in batch.items()}))
            bar.update(len(picked))
    return _restore(parts, order)


def _restore(parts: list[torch.Tensor], order: torch.Tensor) -> torch.Tensor:
    """The batches' rows (in ``order``) back in input order."""
    embeddings = torch.cat(parts)
    restored = torch.empty_like(embeddings)
    restored[order.to(embeddings.device)] = embeddings
    return restored
