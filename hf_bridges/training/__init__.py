"""Training at scale: a YAML-configured Accelerate loop (``hf-bridges train``), LoRA via peft, file trackers."""

from .config import TrainConfig, apply_overrides, load_config

__all__ = ["TrainConfig", "apply_overrides", "load_config"]
