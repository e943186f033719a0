"""What a user hands the index bridge, checked before anything is embedded: each wrong input is one
:class:`IndexBridgeError` that names it and the fix (never numpy's or sentence-transformers' own traceback, a silent
NaN, or a gate that passes whatever the bridge retains). ``bridge`` and ``evaluate`` share these checks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .encoders import IndexBridgeError

MIN_PAIRS = 40  # fewer paired texts cannot fit a map, nor cross-fit its label-free estimate


def check_pair_count(n: int) -> None:
    if n < MIN_PAIRS:
        raise IndexBridgeError(
            f"{n} paired texts are too few to fit an index bridge (at least {MIN_PAIRS}; "
            "a few hundred to 2,000 from your own corpus is the useful range)"
        )


def whole_number(name: str, value: Any, least: int = 1, why: str = "") -> int:
    """``value`` as an int >= ``least``: a bool, a fraction or a number below it fails inside numpy, or worse reads
    as a figure (``k=0`` estimated 0.000 and ``k=-1`` 1.000: every gate passed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise IndexBridgeError(f"{name} must be a whole number >= {least}{why}, got {value!r}")
    return int(value)


def check_batch_size(batch_size: Any) -> int:
    """A batch size below 1 would embed or migrate nothing (sentence-transformers raises its own ValueError)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise IndexBridgeError(f"batch_size must be a positive number of rows, got {batch_size!r}")
    return int(batch_size)


def check_confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise IndexBridgeError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return float(confidence)


def gate_options(minimum: Any, side: Any, bound: Any) -> float:
    """A gate's arguments (``IndexBridge.gate``, ``RetentionMeasurement.check``): the threshold as a float, the side
    and which end of the interval it compares."""
    if side not in ("query", "migrate"):
        raise IndexBridgeError(f"side must be 'query' or 'migrate', got {side!r}")
    if bound not in ("estimate", "low"):
        raise IndexBridgeError(f"bound must be 'estimate' or 'low' (the interval's lower end), got {bound!r}")
    return gate_threshold(minimum)


def gate_threshold(minimum: Any) -> float:
    """A gate's ``minimum`` as a float; NaN would pass every gate (every comparison with it is false) and a string
    would fail inside the comparison, so both are refused with the fix."""
    if isinstance(minimum, bool) or not isinstance(minimum, numbers.Real) or not math.isfinite(minimum):
        nan = " (every comparison with NaN is false: the gate would pass whatever the bridge retains)"
        raise IndexBridgeError(
            f"the minimum retention must be a finite number such as 0.95, got {minimum!r}"
            f"{nan if isinstance(minimum, numbers.Real) and math.isnan(minimum) else ''}"
        )
    return float(minimum)


def text_list(name: str, given: Sequence[str], purpose: str | None = None) -> list[str]:
    """A list of non-empty strings: one string would be read as its characters, None as the text "None"."""
    if isinstance(given, str):
        raise IndexBridgeError(f"{name} must be a list of texts, got one string: pass [{name[:-1]}]")
    given = list(given)
    if not given:
        raise IndexBridgeError(f"no {name}: pass a few hundred {purpose or f'labelled {name} to measure retention on'}")
    bad = next((i for i, t in enumerate(given) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise IndexBridgeError(f"{name}[{bad}] is {given[bad]!r}, not a text: every entry must be a non-empty string")
    return given


def query_texts(queries: Any) -> list[str]:
    """``encode``'s queries as a list of texts: one string, or a non-empty sequence of them."""
    if isinstance(queries, str):
        return [queries]
    if isinstance(queries, bytes) or not isinstance(queries, Iterable):
        raise IndexBridgeError(f"encode takes a query text or a list of them, got {type(queries).__name__}")
    given = list(queries)
    if not given:
        raise IndexBridgeError(
            "no queries to encode: pass a query text or a non-empty list of them (map_queries maps vectors, also an "
            "empty (0, width) array)"
        )
    bad = next((i for i, t in enumerate(given) if not isinstance(t, str)), None)
    if bad is not None:
        raise IndexBridgeError(f"queries[{bad}] is {given[bad]!r}, not a text: every query must be a string")
    return given


def numeric(what: str, x: Any) -> np.ndarray:
    """``x`` as a numeric array; strings, objects or ragged rows are one error that names them."""
    try:
        array = np.asarray(x)
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"dtype {array.dtype}")
        return array
    except (TypeError, ValueError) as error:
        raise IndexBridgeError(
            f"{what} must be a numeric array (rows, width) of float vectors, got {type(x).__name__} ({error})"
        ) from None


def finite(name: str, x: np.ndarray, offset: int | None = None) -> np.ndarray:
    """``x`` as a float32 (rows, width) array, or one error naming the first row that holds NaN or inf (``offset``:
    ``x`` is a batch, after that many rows): among a million stored vectors, which text to embed again."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise IndexBridgeError(f"{name} must be a 2-D array (rows, width), got shape {x.shape}")
    ok = np.isfinite(x).all(1)
    if not ok.all():
        rows = np.flatnonzero(~ok)
        raise IndexBridgeError(
            f"{name} holds NaN or inf values in row {(offset or 0) + int(rows[0])} ({len(rows)} row"
            f"{'s' if len(rows) > 1 else ''} of {x.shape[0]}{'' if offset is None else ' in its batch'}): embed "
            "those texts again, or drop those rows"
        )
    return x
