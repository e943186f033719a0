"""hf_bridges: relative "product of invariances" heads that move between encoders zero-shot.

``import hf_bridges`` is light (no torch): the bridge classes are registered with the transformers Auto classes when
those load (``hf_bridges._hooks``), so ``AutoModelForSequenceClassification.from_pretrained(<bridge folder>)`` works
without ``trust_remote_code``. Every public name is resolved lazily (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _hooks
from ._version import __version__

# public name -> submodule that defines it
_EXPORTS = {
    "modeling.configuration_bridge": ["BRIDGE_FORMAT_VERSION", "BridgeConfig", "HeadConfig"],
    "modeling.registry": ["ConfigError", "HfBridgesError", "InputError", "Registry", "UnknownNameError"],
    "modeling.modeling_bridge": [
        "BridgeClassifierOutput",
        "BridgeForImageClassification",
        "BridgeForSequenceClassification",
        "BridgeModel",
        "BridgeModelOutput",
        "BridgePreTrainedModel",
    ],
    "modeling.head": [
        "ABS_TRANSFORMS",
        "AGGREGATIONS",
        "POOLINGS",
        "PROJECTIONS",
        "SUBSPACE_NORMS",
        "RelativeProductHead",
        "register_abs_transform",
        "register_aggregation",
        "register_pooling",
        "register_projection",
        "register_subspace_norm",
    ],
    "module_bridges.modeling": ["ModuleBridgeForClassification", "ModuleBridgeModel"],
    "module_bridges.reconstruction": ["BridgeForReconstruction"],
    "module_bridges.encoders": ["ImagePreprocess", "ModuleEncoder", "register_module_encoder"],
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
    if module.endswith("modeling"):  # a model class: registered with the Auto classes from now on
        from ._hooks import _register_models

        _register_models()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static names for type checkers and IDEs
    from .heads.format import HeadFormatError
    from .heads.hub import HeadAttachError, load_head, pull_head, push_head_folder
    from .modeling.configuration_bridge import BRIDGE_FORMAT_VERSION, BridgeConfig, HeadConfig
    from .modeling.head import (
        ABS_TRANSFORMS,
        AGGREGATIONS,
        POOLINGS,
        PROJECTIONS,
        SUBSPACE_NORMS,
        RelativeProductHead,
        register_abs_transform,
        register_aggregation,
        register_pooling,
        register_projection,
        register_subspace_norm,
    )
    from .modeling.modeling_bridge import (
        BridgeClassifierOutput,
        BridgeForImageClassification,
        BridgeForSequenceClassification,
        BridgeModel,
        BridgeModelOutput,
        BridgePreTrainedModel,
    )
    from .modeling.registry import ConfigError, HfBridgesError, InputError, Registry, UnknownNameError
    from .module_bridges.encoders import ImagePreprocess, ModuleEncoder, register_module_encoder
    from .module_bridges.modeling import ModuleBridgeForClassification, ModuleBridgeModel
    from .module_bridges.reconstruction import BridgeForReconstruction

_hooks.install()
