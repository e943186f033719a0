"""Check a stitch run's dataset before any embedding: a bad label or text fails in seconds, naming the column."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..modeling.registry import ConfigError, HfBridgesError

if TYPE_CHECKING:
    import datasets


class CacheError(HfBridgesError, OSError):
    """An embedding cache folder that cannot be used as it is; the message says what was done and what to do."""


def check_shard_widths(folder: Path, values: list) -> None:
    """All shards of one cache folder hold embeddings of one width; else the folder (another encoder's shard, or a
    damaged cache) is removed and named, instead of numpy's concatenate message."""
    widths = sorted({int(v.shape[1]) for v in values if getattr(v, "ndim", 0) == 2})
    if len(widths) > 1 or any(getattr(v, "ndim", 2) != 2 for v in values):
        shutil.rmtree(folder, ignore_errors=True)
        raise CacheError(
            f"embedding cache {folder} held shards of different widths {widths} (another encoder's shard, or a "
            "damaged cache); it has been removed: rerun to embed again"
        )


def _example(values, rows) -> str:
    i = rows[0]
    return f"row {i}: {values[i]!r}"


def validate_split(
    split: datasets.Dataset,
    input_column: str,
    label_column: str = "label",
    name: str = "train",
    shown: tuple[str, str] | None = None,
) -> None:
    """Missing / empty / non-integer labels, empty or non-string texts; each error names the column, the count of
    bad rows and an example row."""
    labels = split[label_column]
    text_name, label_name = shown or (input_column, label_column)  # the user's column names, before any rename
    missing = [i for i, v in enumerate(labels) if v is None or (isinstance(v, str) and not v.strip())]
    if missing:
        raise ConfigError(
            f"{name} split, column {label_name!r}: {len(missing)} row(s) without a label "
            f"({_example(labels, missing)}); fill or drop them"
        )
    bad = [
        i
        for i, v in enumerate(labels)
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, float) and not float(v).is_integer())
    ]
    if bad:
        raise ConfigError(
            f"{name} split, column {label_name!r}: {len(bad)} label(s) that are not integers or class "
            f"names ({_example(labels, bad)})"
        )
    kinds = {type(v).__name__ for v in labels}
    if len(kinds) > 1:
        raise ConfigError(f"{name} split, column {label_name!r}: mixed label types {sorted(kinds)}")
    texts = split[input_column]
    if (texts and isinstance(texts[0], (str, type(None)))) or any(isinstance(v, str) for v in texts[:1]):
        wrong = [i for i, v in enumerate(texts) if v is not None and not isinstance(v, str)]
        if wrong:
            raise ConfigError(
                f"{name} split, column {text_name!r}: {len(wrong)} value(s) that are not text "
                f"({_example(texts, wrong)})"
            )
        empty = [i for i, v in enumerate(texts) if v is None or not v.strip()]
        if empty:
            raise ConfigError(
                f"{name} split, column {text_name!r}: {len(empty)} empty text(s) ({_example(texts, empty)}); drop them"
            )
