"""hf_bridges: relative "product of invariances" heads that move between encoders zero-shot.

Importing the package registers the bridge classes with the transformers Auto classes.
"""
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification

from .aggregation import AGGREGATIONS, register_aggregation
from .configuration_bridge import BRIDGE_FORMAT_VERSION, BridgeConfig
from .modeling_bridge import (
    BridgeClassifierOutput,
    BridgeForSequenceClassification,
    BridgeModel,
    BridgeModelOutput,
    BridgePreTrainedModel,
)
from .encoders import ImagePreprocess, ModuleEncoder
from .modeling_bridge_module import ModuleBridgeForClassification, ModuleBridgeModel
from .modeling_bridge_vision import BridgeForImageClassification
from .reconstruction import BridgeForReconstruction
from .pooling import POOLINGS, register_pooling
from .projections import PROJECTIONS, register_projection
from .relative_head import RelativeProductHead
from .transforms import ABS_TRANSFORMS, SUBSPACE_NORMS, register_abs_transform, register_subspace_norm

__version__ = "0.1.0"

AutoConfig.register(BridgeConfig.model_type, BridgeConfig, exist_ok=True)
AutoModel.register(BridgeConfig, BridgeModel, exist_ok=True)
AutoModelForSequenceClassification.register(BridgeConfig, BridgeForSequenceClassification, exist_ok=True)
BridgeConfig.register_for_auto_class()
BridgeModel.register_for_auto_class("AutoModel")
BridgeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
AutoModelForImageClassification.register(BridgeConfig, BridgeForImageClassification, exist_ok=True)
BridgeForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "AGGREGATIONS",
    "ABS_TRANSFORMS",
    "BRIDGE_FORMAT_VERSION",
    "BridgeClassifierOutput",
    "BridgeConfig",
    "BridgeForImageClassification",
    "BridgeForReconstruction",
    "BridgeForSequenceClassification",
    "BridgeModel",
    "BridgeModelOutput",
    "BridgePreTrainedModel",
    "ImagePreprocess",
    "ModuleBridgeForClassification",
    "ModuleBridgeModel",
    "ModuleEncoder",
    "POOLINGS",
    "PROJECTIONS",
    "RelativeProductHead",
    "SUBSPACE_NORMS",
    "register_abs_transform",
    "register_aggregation",
    "register_pooling",
    "register_projection",
    "register_subspace_norm",
]
