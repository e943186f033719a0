"""Register the bridge classes with the transformers Auto classes (run by ``hf_bridges._hooks`` when transformers'
Auto modules load, and on the first ``hf_bridges.<model class>``).

After this, ``AutoConfig`` / ``AutoModel`` / ``AutoModelForSequenceClassification`` /
``AutoModelForImageClassification`` load a saved bridge folder natively; ``register_for_auto_class`` makes
``save_pretrained`` write the ``auto_map`` that ``trust_remote_code=True`` users need instead.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification

from .modeling.configuration_bridge import BridgeConfig
from .modeling.modeling_bridge import BridgeForImageClassification, BridgeForSequenceClassification, BridgeModel

AutoConfig.register(BridgeConfig.model_type, BridgeConfig, exist_ok=True)
AutoModel.register(BridgeConfig, BridgeModel, exist_ok=True)
AutoModelForSequenceClassification.register(BridgeConfig, BridgeForSequenceClassification, exist_ok=True)
AutoModelForImageClassification.register(BridgeConfig, BridgeForImageClassification, exist_ok=True)
BridgeConfig.register_for_auto_class()
BridgeModel.register_for_auto_class("AutoModel")
BridgeForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
BridgeForImageClassification.register_for_auto_class("AutoModelForImageClassification")
