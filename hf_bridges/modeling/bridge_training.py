"""What a bridge does under training habits: the encoder frozen as ``config.freeze_encoder`` says (also after
``from_pretrained``), frozen encoders kept in eval mode, activation checkpointing delegated to the encoder.

Only relative imports of sibling files: shipped as remote code next to the weights.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from .anchor_stores import is_tuner_layer
from .errors import ConfigError


class TrainingHabits:
    """Mixed into :class:`~.modeling_bridge.BridgePreTrainedModel` (before ``PreTrainedModel``)."""

    def _apply_freeze(self) -> None:
        """``config.freeze_encoder`` is the source of truth: no encoder parameter trains while it is set."""
        if self.encoder is not None and self.config.freeze_encoder:
            self.encoder.requires_grad_(False)

    @staticmethod
    def _finalize_model_loading(model, load_config, loading_info):
        """transformers 5 replaces every parameter after ``__init__`` (``requires_grad=True`` again): freeze once
        the weights are in, before ``from_pretrained`` sets eval mode, loads adapters or dispatches."""
        loading_info = PreTrainedModel._finalize_model_loading(model, load_config, loading_info)
        if hasattr(model, "_apply_freeze"):
            model._apply_freeze()
        return loading_info

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, with the encoder frozen as ``config.freeze_encoder`` says (also where a
        transformers release has no ``_finalize_model_loading``; adapters loaded with the model are left alone)."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        bridge = model[0] if isinstance(model, tuple) else model  # output_loading_info=True
        if bridge.encoder is not None and not any(is_tuner_layer(m) for m in bridge.encoder.modules()):
            bridge._apply_freeze()
        return model

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode (no dropout), so training sees the features inference sees and the
        anchors were embedded with; a trainable or LoRA encoder follows ``mode``."""
        super().train(mode)
        if mode and self.encoder is not None and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self

    # ------------------------------------------------------------------------------------- activation checkpointing
    @property
    def supports_gradient_checkpointing(self) -> bool:
        """The encoder's: checkpointing is delegated to it (the head is small; its activations are kept)."""
        encoder = self.__dict__.get("_modules", {}).get("encoder")
        return bool(getattr(encoder, "supports_gradient_checkpointing", False))

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs):
        """Checkpoint the encoder's layers (useful with LoRA or an unfrozen encoder; a frozen encoder keeps no
        activations anyway). Trainer's ``gradient_checkpointing=True`` lands here."""
        if not self.supports_gradient_checkpointing:
            encoder = type(self.encoder).__name__ if self.encoder is not None else "no encoder"
            raise ConfigError(
                f"activation checkpointing is delegated to the encoder, and {encoder} does not support it; "
                "leave gradient_checkpointing off (a frozen encoder keeps no activations to save)"
            )
        return super().activation_checkpointing_enable(activation_checkpointing_kwargs, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        """The encoder's (peft and ``enable_input_require_grads`` look for them)."""
        if self.encoder is None or not hasattr(self.encoder, "get_input_embeddings"):
            raise NotImplementedError(f"{type(self).__name__} has no input embeddings (no transformers encoder)")
        return self.encoder.get_input_embeddings()

    def unfreeze_encoder(self) -> None:
        """Let gradients reach the encoder (anchors are then re-embedded whenever its weights change)."""
        self.config.freeze_encoder = False
        self.encoder.requires_grad_(True)
