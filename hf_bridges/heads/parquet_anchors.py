"""``anchors.parquet`` read within bounds: a head from a stranger may hold a decompression bomb.

The Parquet footer says how many bytes the columns decompress to; that is checked against what ``num_anchors``
anchors of the head's modality can legitimately need before any page is read, and the pages are then read in
batches with a running count (a footer that lies is caught by the count). Text anchors are cut to the characters
that can reach ``max_seq_length`` tokens (:func:`~.files.max_anchor_chars`) before any tokenizer sees them. Types,
nulls and labels are checked here, so the attach never embeds an anchor that is not one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..logging import get_logger
from .files import ANCHORS_NAME, MAX_FEATURES_BYTES, MAX_IMAGE_BYTES, HeadFormatError, max_anchor_chars

logger = get_logger(__name__)
BATCH = 256


def anchor_bytes_limit(config: dict[str, Any]) -> int:
    """The most bytes the anchor and label columns of a legitimate head decompress to."""
    per_anchor = {
        "text": 4 * max_anchor_chars(config.get("max_seq_length")),  # UTF-8: up to 4 bytes a character
        "image": MAX_IMAGE_BYTES,
        "features": MAX_FEATURES_BYTES,
    }[config["modality"]]
    return config["num_anchors"] * (per_anchor + 64) + (1 << 20)


def _anchor_type_ok(modality: str, kind) -> bool:
    import pyarrow as pa

    if modality == "text":
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if modality == "image":
        return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def read_anchors(
    source_file: Path | Any, config: dict[str, Any], source: str
) -> tuple[list[Any], list[int | None] | None]:
    """The anchors and their labels (None: unlabelled), or one :class:`HeadFormatError` naming what is wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"{source}/{ANCHORS_NAME}"
    num, modality = config["num_anchors"], config["modality"]
    handle = pq.ParquetFile(source_file)  # a path, or the verified bytes (pyarrow.BufferReader)
    meta, schema = handle.metadata, handle.schema_arrow
    if "anchor" not in schema.names or meta.num_rows != num:
        raise HeadFormatError(
            f"{where} has {meta.num_rows} rows and columns {schema.names}; expected an 'anchor' column with {num} rows"
        )
    limit = anchor_bytes_limit(config)
    size = sum(
        meta.row_group(i).column(j).total_uncompressed_size
        for i in range(meta.num_row_groups)
        for j in range(meta.num_columns)
    )
    if size > limit:
        raise _too_big(where, size, limit, config)
    kind = schema.field("anchor").type
    if not _anchor_type_ok(modality, kind):
        wanted = {"text": "strings", "image": "PNG bytes (binary)", "features": "lists of numbers"}[modality]
        raise HeadFormatError(
            f"{where}: the anchors of a {modality} head are {wanted}, got {kind}; save the head again"
        )
    has_labels = "label" in schema.names
    if has_labels and not (
        pa.types.is_integer(schema.field("label").type) or pa.types.is_null(schema.field("label").type)
    ):
        raise HeadFormatError(
            f"{where}: column 'label' must hold integer class ids, got {schema.field('label').type}; save the head again"
        )
    anchors: list[Any] = []
    labels: list[Any] = []
    read = 0
    for batch in handle.iter_batches(batch_size=BATCH, columns=["anchor", *(["label"] if has_labels else [])]):
        read += batch.nbytes
        if read > limit:  # the footer understated the pages
            raise _too_big(where, read, limit, config)
        anchors += batch.column(0).to_pylist()
        labels += batch.column(1).to_pylist() if has_labels else []
    return _checked_anchors(anchors, config, where), _checked_labels(labels, config, where)


def _too_big(where: str, size: int, limit: int, config: dict[str, Any]) -> HeadFormatError:
    return HeadFormatError(
        f"{where} decompresses to {size:,} bytes, over the {limit:,} that {config['num_anchors']} {config['modality']} "
        f"anchors can need (max_seq_length {config.get('max_seq_length')}); refused unread: not a head's anchors"
    )


def _checked_anchors(anchors: list[Any], config: dict[str, Any], where: str) -> list[Any]:
    empty = [i for i, a in enumerate(anchors) if a is None or (isinstance(a, (str, bytes, list)) and not a)]
    if config["modality"] == "text":
        empty += [i for i, a in enumerate(anchors) if isinstance(a, str) and a and not a.strip()]
    if empty:
        raise HeadFormatError(
            f"{where}: {len(empty)} of the {len(anchors)} anchors are null or empty (row {min(empty)}: "
            f"{anchors[min(empty)]!r}); every anchor must be an input the encoder can embed: save the head again"
        )
    if config["modality"] != "text":
        return anchors
    limit = max_anchor_chars(config.get("max_seq_length"))
    cut = [i for i, a in enumerate(anchors) if len(a) > limit]
    if cut:
        logger.warning(
            "%s: %d anchors are longer than %d characters; only their first %d are read", where, len(cut), limit, limit
        )
        anchors = [a[:limit] for a in anchors]
    return anchors


def _checked_labels(labels: list[Any], config: dict[str, Any], where: str) -> list[int | None] | None:
    if not labels or all(label is None for label in labels):
        return None
    num = config.get("num_labels") or 0
    bad = [i for i, label in enumerate(labels) if label is not None and (label < 0 or (num and label >= num))]
    if bad:
        wanted = f"in [0, {num - 1}] (num_labels={num})" if num else "non-negative"
        raise HeadFormatError(
            f"{where}: {len(bad)} anchor label(s) out of range (row {bad[0]}: {labels[bad[0]]}); labels must be {wanted}:"
            " save the head again"
        )
    return labels
