"""Training at scale: a YAML-configured Accelerate loop (``hf-bridges train``), LoRA via peft, file trackers, and
``AnchorRefreshCallback`` for ``transformers.Trainer``.

The names below load on first use (PEP 562): ``hf-bridges train --help`` imports ``training.run`` for its
arguments, and the config module validates head names against registries that import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["AnchorRefreshCallback", "TrainConfig", "apply_overrides", "load_config"]
_MODULES = {"AnchorRefreshCallback": ".callbacks"}  # the rest: ".config"

if TYPE_CHECKING:
    from .callbacks import AnchorRefreshCallback
    from .config import TrainConfig, apply_overrides, load_config


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES.get(name, ".config"), __name__), name)
    globals()[name] = value
    return value
