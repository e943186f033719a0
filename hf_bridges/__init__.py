"""hf_bridges: relative "product of invariances" heads that move between encoders zero-shot.

``import hf_bridges`` registers the bridge classes with the transformers Auto classes, so
``AutoModelForSequenceClassification.from_pretrained(<bridge folder>)`` works without ``trust_remote_code``. That
costs what importing transformers' ``PreTrainedModel`` costs (a few seconds, mostly torch and transformers).
The ``hf-bridges`` command skips it: its light subcommands (``--help``, ``--version``, ``info``, ``offline-seed``)
never touch the model stack, and the others import what they use. Every public name is resolved lazily (PEP 562).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

# public name -> submodule that defines it
_EXPORTS = {
    "modeling.configuration_bridge": ["BRIDGE_FORMAT_VERSION", "BridgeConfig"],
    "modeling.errors": ["ConfigError", "HfBridgesError", "UnknownNameError"],
    "modeling.registry": ["Registry"],
    "modeling.modeling_bridge": [
        "BridgeClassifierOutput",
        "BridgeForSequenceClassification",
        "BridgeModel",
        "BridgeModelOutput",
        "BridgePreTrainedModel",
    ],
    "modeling.modeling_bridge_vision": ["BridgeForImageClassification"],
    "modeling.modeling_bridge_module": ["ModuleBridgeForClassification", "ModuleBridgeModel"],
    "modeling.modeling_bridge_reconstruction": ["BridgeForReconstruction"],
    "modeling.module_encoders": ["ImagePreprocess", "ModuleEncoder", "register_module_encoder"],
    "modeling.head": ["HeadConfig", "RelativeProductHead"],
    "modeling.aggregation": ["AGGREGATIONS", "register_aggregation"],
    "modeling.pooling": ["POOLINGS", "register_pooling"],
    "modeling.projections": ["PROJECTIONS", "register_projection"],
    "modeling.transforms": ["ABS_TRANSFORMS", "SUBSPACE_NORMS", "register_abs_transform", "register_subspace_norm"],
    "heads.format": ["HeadFormatError"],
    "heads.hub": ["HeadAttachError", "load_head", "pull_head", "push_head_folder"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [*sorted(_WHERE), "__version__"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_bridges' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static names for type checkers and IDEs
    from .heads.format import HeadFormatError
    from .heads.hub import HeadAttachError, load_head, pull_head, push_head_folder
    from .modeling.aggregation import AGGREGATIONS, register_aggregation
    from .modeling.configuration_bridge import BRIDGE_FORMAT_VERSION, BridgeConfig
    from .modeling.errors import ConfigError, HfBridgesError, UnknownNameError
    from .modeling.head import HeadConfig, RelativeProductHead
    from .modeling.modeling_bridge import (
        BridgeClassifierOutput,
        BridgeForSequenceClassification,
        BridgeModel,
        BridgeModelOutput,
        BridgePreTrainedModel,
    )
    from .modeling.modeling_bridge_module import ModuleBridgeForClassification, ModuleBridgeModel
    from .modeling.modeling_bridge_reconstruction import BridgeForReconstruction
    from .modeling.modeling_bridge_vision import BridgeForImageClassification
    from .modeling.module_encoders import ImagePreprocess, ModuleEncoder, register_module_encoder
    from .modeling.pooling import POOLINGS, register_pooling
    from .modeling.projections import PROJECTIONS, register_projection
    from .modeling.registry import Registry
    from .modeling.transforms import ABS_TRANSFORMS, SUBSPACE_NORMS, register_abs_transform, register_subspace_norm

if os.path.basename(sys.argv[0] if sys.argv else "") != "hf-bridges":
    from . import auto
