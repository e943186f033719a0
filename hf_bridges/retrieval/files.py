"""An index bridge as a head-only folder (``heads.format``): written, checked, pushed and pulled like any head.

* ``anchors.parquet``: the paired texts; ``anchor_space.safetensors``: the old encoder's vectors of them (so the
  bridge can be refitted for another new encoder without the old one);
* ``bridge_head.safetensors``: ``query.weight`` / ``query.bias`` (new -> old) and ``migrate.weight`` /
  ``migrate.bias`` (old -> new), float32, the standardisation folded in; a blended map (format 3) holds
  ``query.0.weight``, ``query.0.bias``, ``query.1.weight``... per member instead, its record the members' weights;
* ``bridge_head_config.json``: ``head_class: IndexBridge``, the old encoder as the head's ``encoder``, and
  ``index_bridge``: both encoder records, the maps' fit records, the expected retention.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..heads.files import PLAIN_HEAD_FORMAT, _package_version
from ..heads.format import BridgeHead
from .encoders import IndexBridgeError
from .estimate import RetentionEstimate
from .maps import FORMAT, KIND, PLAIN_FORMAT, BlendedMap, LinearMap

SETTINGS = ("pooling", "normalize", "max_seq_length", "prompts", "default_prompt_name", "query_space")


def _jsonable(info: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in info.items()}


def _map_record(linear: LinearMap | BlendedMap) -> dict:
    """The map's fit record and how it is applied (read back by ``from_head``)."""
    if isinstance(linear, BlendedMap):
        members = [
            {"weight": w, "unit_input": m.unit_input, "map": m.info.get("map")}
            for w, m in zip(linear.weights, linear.members)
        ]
        return {**_jsonable(linear.info), "normalize": True, "length": linear.length, "blend": members}
    return {
        **_jsonable(linear.info),
        "normalize": linear.normalize,
        "unit_input": linear.unit_input,
        "length": linear.length,
    }


def _map_tensors(name: str, linear: LinearMap | BlendedMap) -> dict:
    if isinstance(linear, BlendedMap):
        return {
            f"{name}.{i}.{part}": torch.from_numpy(getattr(member, part))
            for i, member in enumerate(linear.members)
            for part in ("weight", "bias")
        }
    return {f"{name}.weight": torch.from_numpy(linear.weight), f"{name}.bias": torch.from_numpy(linear.bias)}


def to_head(bridge: Any) -> BridgeHead:
    if bridge.texts is None or bridge.old_vectors is None:
        raise IndexBridgeError(
            "this bridge was fitted from vectors alone: pass texts=... to fit_embeddings to save it (a saved bridge "
            "keeps its paired texts, so it can be refitted for another encoder)"
        )
    old = bridge.old
    maps = (bridge.query_map, bridge.migrate_map)
    config = {
        "library_name": "hf_bridges",
        "bridge_head_format_version": PLAIN_HEAD_FORMAT,
        "hf_bridges_version": _package_version(),
        "head_class": KIND,
        "modality": "text",
        "projections": ["cosine"],  # the relative coordinates a head would compute; an index bridge uses none
        "num_anchors": len(bridge.texts),
        "pooling": old.get("pooling"),
        "max_seq_length": old.get("max_seq_length"),
        "num_labels": 0,
        "weights_dtype": "float32",
        "encoder": {
            "name_or_path": old.get("name_or_path"),
            "revision": old.get("revision"),
            "hidden_size": old["hidden_size"],
        },
        "index_bridge": {
            # the oldest format that holds these maps: a bridge without a blend stays readable by older releases
            "format": FORMAT if any(isinstance(m, BlendedMap) for m in maps) else PLAIN_FORMAT,
            "old_encoder": {k: old.get(k) for k in ("name_or_path", "revision", "hidden_size", *SETTINGS)},
            "new_encoder": {
                k: bridge.new.get(k) for k in ("name_or_path", "revision", "hidden_size", *SETTINGS, "probe")
            },
            "query_map": _map_record(bridge.query_map),
            "migrate_map": _map_record(bridge.migrate_map),
            "expected_retention": {side: est.to_dict() for side, est in bridge.retention.items()},
        },
    }
    state = {**_map_tensors("query", bridge.query_map), **_map_tensors("migrate", bridge.migrate_map)}
    return BridgeHead(
        config=config,
        state_dict={k: v.contiguous() for k, v in state.items()},
        anchors=list(bridge.texts),
        anchor_labels=None,
        anchor_embeddings=torch.from_numpy(np.asarray(bridge.old_vectors, dtype=np.float32)),
    )


def from_head(head: BridgeHead, cls: type) -> Any:
    """The ``IndexBridge`` a head folder holds. A record that cannot be read (a key missing, a value of the wrong
    type: a hand-edited or truncated-then-repaired config; the config is not checksummed as the weights are) or maps
    that are not finite (they would return NaN vectors) is one error that names the folder and the fix."""
    try:
        bridge = _from_head(head, cls)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, IndexBridgeError):
            raise
        detail = f"no {error}" if isinstance(error, KeyError) else str(error)
        raise IndexBridgeError(
            f"{head.source or 'the folder'}: the index_bridge record of its bridge_head_config.json is damaged "
            f"({type(error).__name__}: {detail}); save or push the bridge again"
        ) from None
    for name, linear in (("query", bridge.query_map), ("migrate", bridge.migrate_map)):
        parts = [linear] if isinstance(linear, LinearMap) else list(linear.members)
        values = [np.asarray([linear.length, *getattr(linear, "weights", [])], np.float64)]
        values += [np.asarray(getattr(m, t)) for m in parts for t in ("weight", "bias")]
        if not all(np.isfinite(v).all() for v in values):
            raise IndexBridgeError(
                f"{head.source or 'the folder'}: its {name} map holds NaN or inf values (its weights or recorded "
                "length), so every vector it maps would be NaN; save or push the bridge again"
            )
    return bridge


def _from_head(head: BridgeHead, cls: type) -> Any:
    config = head.config
    source = head.source or "the folder"
    if config.get("head_class") != KIND or "index_bridge" not in config:
        raise IndexBridgeError(
            f"{source} is a bridge head ({config.get('head_class') or 'a classification head'}), not an index bridge: "
            "attach it with BridgeModel.from_encoder(encoder, head=...), or fit an index bridge with IndexBridge.fit"
        )
    record = config["index_bridge"]
    if not isinstance(record.get("format"), int) or record["format"] > FORMAT:
        raise IndexBridgeError(
            f"{source} holds an index bridge of format {record.get('format')!r}, newer than this hf_bridges reads "
            f"({FORMAT}): pip install -U hf_bridges"
        )
    old, new = dict(record["old_encoder"]), dict(record["new_encoder"])
    maps = {}
    for name, side_in, side_out in (("query", new, old), ("migrate", old, new)):
        info = dict(record[f"{name}_map"])
        blend = info.pop("blend", None)
        if blend is None:
            weight, bias = _weights(head, name, side_in, side_out, source)
            normalize, unit_input = bool(info.pop("normalize")), bool(info.pop("unit_input", False))  # format 1: no
            length = float(info.pop("length", 1.0))  # input normalisation, unit output length
            maps[name] = LinearMap(weight, bias, normalize, info, unit_input=unit_input, length=length)
            continue
        members = [
            LinearMap(
                *_weights(head, f"{name}.{i}", side_in, side_out, source),
                True,
                {"map": m.get("map")},
                unit_input=bool(m["unit_input"]),
            )
            for i, m in enumerate(blend)
        ]
        info.pop("normalize", None)
        length = float(info.pop("length", 1.0))
        maps[name] = BlendedMap(members, [float(m["weight"]) for m in blend], length, info)
    return cls(
        maps["query"],
        maps["migrate"],
        old,
        new,
        texts=[str(t) for t in head.anchors],
        old_vectors=head.anchor_embeddings.float().numpy(),
        retention={side: RetentionEstimate.from_dict(d) for side, d in record.get("expected_retention", {}).items()},
        source=head.source,
        revision=head.revision,
    )


def _weights(head: BridgeHead, name: str, side_in: dict, side_out: dict, source: str) -> tuple[np.ndarray, np.ndarray]:
    weight, bias = head.state_dict.get(f"{name}.weight"), head.state_dict.get(f"{name}.bias")
    if weight is None or bias is None or tuple(weight.shape) != (side_in["hidden_size"], side_out["hidden_size"]):
        raise IndexBridgeError(
            f"{source}: the {name} map in its weights does not match the encoders in its config "
            f"({side_in['hidden_size']} -> {side_out['hidden_size']}); save the bridge again"
        )
    return weight.numpy(), bias.numpy()
