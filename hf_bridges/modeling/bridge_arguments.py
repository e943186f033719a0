"""Keyword checking for ``from_encoder`` / ``from_module`` and the lazy hook into the installed package's head I/O.

Only relative imports of sibling files: shipped as remote code next to the weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from .configuration_bridge import BridgeConfig


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments the caller set (None: leave the config's default, or ``head_config``'s value)."""
    return {key: value for key, value in kwargs.items() if value is not None}


# Config fields from_encoder sets itself (or takes under another name: head_config=, prefix=), so not as **kwargs.
_RESERVED = frozenset(
    {
        "self",
        "kwargs",
        "encoder",
        "encoder_revision",
        "anchors",
        "anchor_seq_length",
        "num_anchors",
        "bridge_format_version",
        "head",
        "input_prefix",
        "transformers_version",
        "architectures",
    }
)


def check_config_kwargs(kwargs: dict[str, Any], where: str, named: Sequence[str] = (), allowed: Sequence[str] = ()):
    """Refuse keyword arguments that are no ``BridgeConfig`` field (a typo would otherwise land in the config and
    be silently ignored); the error names them and the closest valid name."""
    import difflib
    import inspect

    fields = set(inspect.signature(BridgeConfig.__init__).parameters)
    fields |= set(inspect.signature(PretrainedConfig.__init__).parameters) | {"num_labels"}
    valid = (fields - _RESERVED) | set(allowed)
    unknown = [key for key in kwargs if key not in valid]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(valid | set(named)), n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"{where}() got unexpected keyword argument(s) {', '.join(hints)}; valid: its own arguments "
            f"{sorted(named)} and the BridgeConfig fields {sorted(valid)}"
        )


def _installed(module: str):
    """A module of the installed package (``heads.hub``, ``heads.compatibility``): head-only I/O, attach and the
    anchor-fitted maps live there, not in the remote-code files shipped next to the weights."""
    try:
        return importlib.import_module(f"hf_bridges.{module}")
    except ImportError as error:
        raise ImportError(
            f"head-only save/push/attach and attaching encoders need the hf_bridges package ({error}): "
            "pip install hf_bridges"
        ) from None


def _hub():
    """Head-only save/push/attach: ``hf_bridges.heads.hub``."""
    return _installed("heads.hub")


_FROM_ENCODER_ARGS = (
    "encoder",
    "anchors",
    "head",
    "tokenizer",
    "revision",
    "anchor_labels",
    "pooling",
    "max_seq_length",
    "projections",
    "aggregation",
    "head_config",
    "prefix",
    "encoder_kwargs",
    "normalize_embeddings",
    "labels",
    "embed_anchors",
    "alignment_inputs",
)


def _attach_arguments(hub: Any) -> tuple[str, ...]:
    """The keyword arguments ``attach_head`` takes itself (``head_revision``, ``token``, ``subspace_selection``...)."""
    import inspect

    params = inspect.signature(hub.attach_head).parameters
    return tuple(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
