"""A bridge ``config.json`` typed field by field before the config is built (the installed package only).

``@strict`` types nothing in ``configuration_bridge.py`` (its annotations are strings under ``from __future__ import
annotations``), so a ``config.json`` from a stranger with ``"max_seq_length": "64"`` loaded and failed in the first
forward with a raw TypeError, ``"output_shape": ["a"]`` raised int()'s ValueError, and ``"freeze_encoder": "no"`` was
read as true. Kept out of the shipped remote-code files: without the package the code is the stranger's too.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from ..modeling.registry import ConfigError

# field: its least value; the optional ones are null or a whole number (>= 1; num_anchors >= 0)
WHOLE_NUMBERS = {"max_seq_length": 1, "anchor_seq_length": 0, "anchor_batch_size": 1, "decoder_hidden_size": 1}
OPTIONAL_WHOLE_NUMBERS = ("features_dim", "num_anchors")  # num_anchors null: the number of anchors given
FLAGS = ("freeze_encoder", "normalize_embeddings")
SHAPES = ("anchor_input_shape", "anchor_image_shape", "output_shape")


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def check_fields(config: Any) -> None:
    """Raise ``ConfigError`` naming the first field of ``config`` (a ``BridgeConfig`` being built) of the wrong type."""
    fix = "fix it in config.json (or save the model again)"
    for name, low in WHOLE_NUMBERS.items():
        value = getattr(config, name)
        if not _whole(value, low):
            raise ConfigError(f"BridgeConfig.{name} must be a whole number >= {low}, got {_got(value)}; {fix}")
    for name in OPTIONAL_WHOLE_NUMBERS:
        value, low = getattr(config, name), 0 if name == "num_anchors" else 1
        if value is not None and not _whole(value, low):
            raise ConfigError(f"BridgeConfig.{name} must be a whole number >= {low} or null, got {_got(value)}; {fix}")
    for name in FLAGS:
        if not isinstance(getattr(config, name), bool):
            raise ConfigError(f"BridgeConfig.{name} must be true or false, got {_got(getattr(config, name))}; {fix}")
    for name in SHAPES:
        value = getattr(config, name)
        if value is not None and (isinstance(value, (str, bytes, Mapping)) or not all(_whole(v, 0) for v in value)):
            raise ConfigError(
                f"BridgeConfig.{name} must be a list of whole numbers (a tensor shape), got {_got(value)}; {fix}"
            )
