"""A head config checked against its schema and its weights file before anything is allocated.

Types, ranges and registered names of every field a head is rebuilt from, and the tensor shapes read from the
safetensors header (no tensor loaded): an edited ``bridge_head_config.json`` gets an error naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .files import WEIGHTS_NAME, HeadFormatError

MAX_WIDTH = 1 << 16  # no head layer is wider: a larger value is an edited config, refused before any allocation


def validate_head_config(config: dict[str, Any], where: str) -> None:
    """Types, ranges and registered names of the fields a head is rebuilt from; each error names the field."""
    from ..modeling.aggregation import AGGREGATIONS
    from ..modeling.projections import PROJECTIONS
    from ..modeling.transforms import ABS_TRANSFORMS, SUBSPACE_NORMS

    def bad(field: str, wanted: str) -> HeadFormatError:
        value = config.get(field)
        return HeadFormatError(
            f"{where}: field {field!r} must be {wanted}, got {value!r} ({type(value).__name__}); "
            "fix the field or save the head again"
        )

    for field in ("encoder", "files"):
        if not isinstance(config[field], dict):
            raise bad(field, "an object (a JSON mapping)")
    if config.get("tokenizer") is not None and not isinstance(config["tokenizer"], dict):
        raise bad("tokenizer", "an object (vocab_size, anchor_ids_sha256)")
    if config.get("input_prefix") is not None and not isinstance(config["input_prefix"], str):
        raise bad("input_prefix", "a string (the text prepended to every input in training)")
    projections = config["projections"]
    if not isinstance(projections, list) or not projections or not all(isinstance(n, str) for n in projections):
        raise bad("projections", "a non-empty list of projection names")
    for field, registry, values in (
        ("projections", PROJECTIONS, projections),
        ("aggregation", AGGREGATIONS, [config.get("aggregation")]),
        ("abs_transform", ABS_TRANSFORMS, [config.get("abs_transform")]),
        ("subspace_norm", SUBSPACE_NORMS, [config.get("subspace_norm")]),
    ):
        for name in values:
            if name is not None and (not isinstance(name, str) or name not in registry):
                raise bad(field, f"one of {sorted(registry)}")
    for field, low, high in (
        ("num_anchors", 1, 1 << 20),
        ("anchor_batch_size", 1, 1 << 20),
        ("classifier_hidden_size", 0, MAX_WIDTH),
        ("aggregation_dim", 1, MAX_WIDTH),
        ("max_seq_length", 1, 1 << 20),
        ("num_labels", 0, 1 << 20),
    ):
        value = config.get(field)
        if value is None and field not in ("num_anchors",):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise bad(field, f"an integer in [{low}, {high}]")
    if config.get("aligned") is not None and not isinstance(config.get("aligned"), bool):
        raise bad("aligned", "true or false")
    value = config.get("aligned_dim")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WIDTH):
        raise bad("aligned_dim", f"an integer in [1, {MAX_WIDTH}]")
    for field in ("classifier_dropout", "subspace_dropout", "component_dropout"):
        value = config.get(field)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1):
            raise bad(field, "a number in [0, 1)")
    hidden = config["encoder"].get("hidden_size")
    if hidden is not None and (not isinstance(hidden, int) or isinstance(hidden, bool) or not 1 <= hidden <= MAX_WIDTH):
        raise HeadFormatError(
            f"{where}: field 'encoder.hidden_size' must be an integer in [1, {MAX_WIDTH}], got {hidden!r}"
        )


def check_weights_header(path: Path, config: dict[str, Any], where: str) -> None:
    """Read tensor shapes from the safetensors header (no tensor is loaded) and match them with the config."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118 (a safetensors handle, no __contains__/__iter__)
    hidden = config.get("classifier_hidden_size")
    first = shapes.get("classifier.0.weight", shapes.get("classifier.relative.0.weight"))  # concat / summed heads
    if first is not None and hidden and first[0] != hidden:
        raise HeadFormatError(
            f"{where}: field 'classifier_hidden_size' is {hidden} but {WEIGHTS_NAME} holds "
            f"classifier.0.weight of shape {list(first)}; fix the field or save the head again"
        )
    if any(int(torch.tensor(shape).prod()) > (1 << 28) for shape in shapes.values() if shape):
        raise HeadFormatError(f"{where}: {WEIGHTS_NAME} declares a tensor over 2^28 elements; not a bridge head")


def tokenizer_fingerprint(tokenizer, anchors, ids: list | None = None) -> dict[str, Any]:
    """How ``tokenizer`` maps the raw anchors (no prefix, no special tokens): its size and a sha256 of the token ids.
    Stored with a head, it tells at attach a tokenizer that maps the anchors differently (e.g. a permuted
    vocabulary of the same size) apart from the training one."""
    import hashlib

    if ids is None:  # ``ids``: these very token ids, when the caller has them (attach_head)
        ids = tokenizer([str(a) for a in anchors], add_special_tokens=False, truncation=True, max_length=512)
        ids = ids["input_ids"]
    digest = hashlib.sha256(json.dumps([list(map(int, row)) for row in ids], separators=(",", ":")).encode())
    return {"vocab_size": len(tokenizer), "anchor_ids_sha256": digest.hexdigest()}
