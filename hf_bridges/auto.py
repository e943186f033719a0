"""Register the bridge classes with the transformers Auto classes (run by ``import hf_bridges``), and the packaged
EfficientNet-Lite module encoders (their registry imports torch, so the CLI's light commands skip both).

After this, ``AutoConfig`` / ``AutoModel`` / ``AutoModelForSequenceClassification`` /
``AutoModelForImageClassification`` load a saved bridge folder natively; ``register_for_auto_class`` makes
``save_pretrained`` write the ``auto_map`` that ``trust_remote_code=True`` users need instead.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification

from .modeling.configuration_bridge import BridgeConfig
from .modeling.modeling_bridge import BridgeForSequenceClassification, BridgeModel
from .modeling.modeling_bridge_vision import BridgeForImageClassification
from .offline import vision_encoders  # noqa: F401  (registers efficientnet-lite0/1/2 as module encoders)

AutoConfig.register(BridgeConfig.model_type, BridgeConfig, exist_ok=True)
AutoModel.register(BridgeConfig, BridgeModel, exist_ok=True)
AutoModelForSequenceClassification.register(BridgeConfig, BridgeForSequenceClassification, exist_ok=True)
AutoModelForImageClassification.register(BridgeConfig, BridgeForImageClassification, exist_ok=True)
BridgeConfig.register_for_auto_class()
BridgeModel.register_for_auto_class("AutoModel")
BridgeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
BridgeForImageClassification.register_for_auto_class("AutoModelForImageClassification")
