"""Training at scale: a YAML-configured Accelerate loop (``hf-bridges train``), LoRA via peft, file trackers.

The names below load on first use (PEP 562): ``hf-bridges train --help`` imports ``training.run`` for its
arguments, and the config module validates head names against registries that import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["TrainConfig", "apply_overrides", "load_config"]

if TYPE_CHECKING:
    from .config import TrainConfig, apply_overrides, load_config


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".config", __name__), name)
    globals()[name] = value
    return value
