"""A head config checked against its schema and its weights file before anything is allocated.

Types, ranges and registered names of every field a head is rebuilt from, and the tensor shapes read from the
safetensors header (no tensor loaded): an edited ``bridge_head_config.json`` gets an error naming the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..modeling.configuration_bridge import HeadConfig
from ..modeling.registry import ConfigError
from .files import DATA_FILES, MAX_ANCHORS, MODALITIES, WEIGHTS_NAME, HeadFormatError

MAX_WIDTH = 1 << 16  # no head layer is wider: a larger value is an edited config, refused before any allocation


def validate_head_config(config: dict[str, Any], where: str) -> None:
    """Types, ranges and registered names of the fields a head is rebuilt from; each error names the field. The
    head's own fields are checked by :class:`HeadConfig` itself (the one place that lists them)."""

    def bad(field: str, wanted: str) -> HeadFormatError:
        value = config.get(field)
        return HeadFormatError(
            f"{where}: field {field!r} must be {wanted}, got {value!r} ({type(value).__name__}); "
            "fix the field or save the head again"
        )

    for field in ("encoder", "files"):
        if not isinstance(config[field], dict):
            raise bad(field, "an object (a JSON mapping)")
    if config["modality"] not in MODALITIES:
        raise bad("modality", f"one of {list(MODALITIES)}")
    _check_files(config["files"], where)
    _check_labels(config, where)
    if config.get("tokenizer") is not None and not isinstance(config["tokenizer"], dict):
        raise bad("tokenizer", "an object (vocab_size, anchor_ids_sha256)")
    if config.get("input_prefix") is not None and not isinstance(config["input_prefix"], str):
        raise bad("input_prefix", "a string (the text prepended to every input in training)")
    for field, low, high in (
        ("num_anchors", 1, MAX_ANCHORS),
        ("anchor_batch_size", 1, 1 << 20),
        ("max_seq_length", 1, 1 << 20),
        ("num_labels", 0, 1 << 20),
    ):
        value = config.get(field)
        if value is None and field not in ("num_anchors",):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(field, f"an integer in [{low}, {high}]")
    relative = config.get("relative_anchors")
    if relative is not None and (
        not isinstance(relative, int) or isinstance(relative, bool) or not 1 <= relative <= config["num_anchors"]
    ):
        raise bad("relative_anchors", f"null or an integer in [1, num_anchors={config['num_anchors']}]")
    pooling = config.get("pooling")
    if pooling is not None:
        from ..modeling.head import POOLINGS

        if not isinstance(pooling, str) or pooling not in POOLINGS:
            raise bad("pooling", f"one of {sorted(POOLINGS)}")
    head = {key: config[key] for key in HeadConfig.field_names() if key in config}
    try:  # absent keys: what the release that wrote the head meant
        HeadConfig.from_dict(head, where="head", legacy=True)
    except ConfigError as error:  # "head.<field>[i]: problem" or "head: <field> problem"
        found = re.match(r"head(?:\.(\w+)(?:\[\d+\])?:|: (\w+))\s*(.*)", str(error), re.S)
        field, problem = (found.group(1) or found.group(2), found.group(3)) if found else ("head", str(error))
        raise HeadFormatError(f"{where}: field {field!r}: {problem}; fix the field or save the head again") from None
    hidden = config["encoder"].get("hidden_size")
    if hidden is not None and (not isinstance(hidden, int) or isinstance(hidden, bool) or not 1 <= hidden <= MAX_WIDTH):
        raise HeadFormatError(
            f"{where}: field 'encoder.hidden_size' must be an integer in [1, {MAX_WIDTH}], got {hidden!r}"
        )


def _check_files(files: dict[str, Any], where: str) -> None:
    """``files.<name>``: ``{"sha256": 64 hex digits, "size": bytes}`` per file (what the reader verifies and
    ``head inspect`` prints)."""
    for name, entry in files.items():
        if entry is None and name in DATA_FILES:
            continue
        sha, size = (entry.get("sha256"), entry.get("size")) if isinstance(entry, dict) else (None, None)
        good_sha = sha is None or (isinstance(sha, str) and len(sha) == 64 and all(c in HEX for c in sha))
        good_size = size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 0)
        if not isinstance(entry, dict) or not good_sha or not good_size:
            raise HeadFormatError(
                f'{where}: field \'files.{name}\' must be an object {{"sha256": 64 hex digits, "size": bytes}}, '
                f"got {str(entry)[:80]!r} ({type(entry).__name__}); fix the field or save the head again"
            )


def _check_labels(config: dict[str, Any], where: str) -> None:
    """``id2label``: null or an object mapping label ids ("0", "1", ...) to names, below ``num_labels`` when set."""
    labels = config.get("id2label")
    if labels is None:
        return
    num = config.get("num_labels")
    limit = num if isinstance(num, int) and not isinstance(num, bool) and num > 0 else 1 << 20
    ok = isinstance(labels, dict) and all(
        isinstance(k, str) and k.isdigit() and k.isascii() and int(k) < limit and isinstance(v, str)
        for k, v in labels.items()
    )
    if not ok:
        shown = str(labels)[:80]
        raise HeadFormatError(
            f'{where}: field \'id2label\' must be an object mapping label ids "0".."{limit - 1}" to names, got '
            f"{shown!r} ({type(labels).__name__}); fix the field or save the head again"
        )


FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors header dtypes a head's weights may have
HEX = frozenset("0123456789abcdef")


def check_weights_header(path: Path, config: dict[str, Any], where: str) -> None:
    """Read tensor shapes from the safetensors header (no tensor is loaded) and match them with the config."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        slices = {key: handle.get_slice(key) for key in handle.keys()}  # noqa: SIM118 (a safetensors handle, no __contains__/__iter__)
        shapes = {key: tuple(piece.get_shape()) for key, piece in slices.items()}
        dtypes = {key: str(piece.get_dtype()) for key, piece in slices.items()}
    if not shapes:
        raise HeadFormatError(
            f"{where}: {WEIGHTS_NAME} holds no tensors (an empty weights file, not a head without a classifier); "
            "save or push the head again"
        )
    wrong = {key: dtype for key, dtype in dtypes.items() if dtype.upper() not in FLOAT_DTYPES}
    if wrong:
        key = sorted(wrong)[0]
        raise HeadFormatError(
            f"{where}: {WEIGHTS_NAME} holds tensor {key!r} of dtype {wrong[key]}; head weights are floating point "
            "(float32 / float16 / bfloat16), never cast from integers or booleans: save the head again"
        )
    labels = config.get("num_labels") or 0
    if labels and not any(key.startswith("classifier.") for key in shapes):
        raise HeadFormatError(
            f"{where}: field 'num_labels' is {labels} but {WEIGHTS_NAME} holds no classifier tensors (it holds "
            f"{sorted(shapes)[:4]}); these weights are not this config's head: save or push the head again"
        )
    hidden = config.get("classifier_hidden_size")
    first = shapes.get("classifier.0.weight", shapes.get("classifier.relative.0.weight"))  # concat / summed heads
    if first is not None and hidden and (len(first) != 2 or first[0] != hidden):
        raise HeadFormatError(
            f"{where}: field 'classifier_hidden_size' is {hidden} but {WEIGHTS_NAME} holds "
            f"classifier.0.weight of shape {list(first)}; fix the field or save the head again"
        )
    if any(int(torch.tensor(shape).prod()) > (1 << 28) for shape in shapes.values() if shape):
        raise HeadFormatError(f"{where}: {WEIGHTS_NAME} declares a tensor over 2^28 elements; not a bridge head")


def tokenizer_fingerprint(tokenizer: Any, anchors: list, ids: list | None = None) -> dict[str, Any]:
    """How ``tokenizer`` maps the raw anchors (no prefix, no special tokens): its size and a sha256 of the token ids.
    Stored with a head, it tells at attach a tokenizer that maps the anchors differently (e.g. a permuted
    vocabulary of the same size) apart from the training one."""
    import hashlib

    if ids is None:  # ``ids``: these very token ids, when the caller has them (attach_head)
        ids = tokenizer([str(a) for a in anchors], add_special_tokens=False, truncation=True, max_length=512)
        ids = ids["input_ids"]
    digest = hashlib.sha256(json.dumps([list(map(int, row)) for row in ids], separators=(",", ":")).encode())
    return {"vocab_size": len(tokenizer), "anchor_ids_sha256": digest.hexdigest()}
