"""Bridges over plain ``nn.Module`` encoders (graph networks, custom CNNs, audio models) or precomputed features.

Same head, same config, same ``save_pretrained``/``from_pretrained`` as the transformers bridges. The difference:
the encoder cannot be rebuilt from a config, so it is *not* saved; what is saved is the head, the raw anchor inputs
(any tensor: images, node ids, feature rows) and their embeddings. Load it back with ``module=`` to attach an encoder
(the same one, or another one for zero-shot stitching: the anchors are re-embedded) or without, and feed
``features=``.

    bridge = ModuleBridgeForClassification.from_module(gcn, anchors=anchor_node_ids, num_labels=2)
    bridge(inputs=node_ids, labels=y).loss
    bridge.save_pretrained("head")
    other = ModuleBridgeForClassification.from_pretrained("head", module=other_gcn)   # stitched, zero-shot
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..building.arguments import check_config_kwargs, given, resolve_head, with_alignment
from ..heads.compatibility import fit_bridge_alignment, stitch_reference
from ..modeling.configuration_bridge import BridgeConfig
from ..modeling.modeling_bridge import BridgeClassifierOutput, BridgeModelOutput, BridgePreTrainedModel
from ..modeling.registry import ConfigError, InputError
from .encoders import ModuleEncoder, as_module_encoder

__all__ = ["ModuleBridgeForClassification", "ModuleBridgeModel", "ModuleBridgePreTrainedModel", "TensorAnchorStore"]


class TensorAnchorStore(nn.Module):
    """Raw anchor inputs as one tensor (to re-embed with any encoder) and their cached embeddings."""

    def __init__(self, num_anchors: int, input_shape: Sequence[int], input_dtype: str, hidden_size: int):
        super().__init__()
        dtype = getattr(torch, input_dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ConfigError(f"unknown anchor input dtype {input_dtype!r}")
        self.register_buffer("inputs", torch.zeros(num_anchors, *input_shape, dtype=dtype))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, config: BridgeConfig) -> TensorAnchorStore:
        shape = config.anchor_input_shape
        return cls(config.num_anchors, [0] if shape is None else shape, config.anchor_input_dtype, config.hidden_size)

    def has_inputs(self) -> bool:
        return self.inputs.numel() > 0


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ModuleBridgePreTrainedModel(BridgePreTrainedModel):
    """Shared machinery: a :class:`ModuleEncoder` (or no encoder) and tensor anchors."""

    main_input_name = "inputs"
    input_names = ("inputs",)
    anchor_store_class = TensorAnchorStore
    _no_encoder_hint = (
        "attach one with attach_encoder(module) (or from_pretrained(..., module=...)), or set "
        "precomputed anchor embeddings with set_anchor_embeddings(...)"
    )

    def __init__(self, config: BridgeConfig, encoder: nn.Module | None = None):
        if config.encoder is not None:
            raise ConfigError(
                "this config wraps a transformers encoder; load it with BridgeForSequenceClassification / "
                "BridgeForImageClassification, not a module bridge"
            )
        super().__init__(config, encoder=None)
        if encoder is not None:
            # Attached after post_init: transformers' weight initialisation would otherwise re-initialise the
            # module's (pretrained) Linear / Conv / norm layers, which carry no "already initialised" flag.
            encoder = as_module_encoder(encoder)
            if config.freeze_encoder:
                encoder.requires_grad_(False)
            self.encoder = encoder

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        anchors: Any,
        *,
        method: str = "forward",
        output: Any = None,
        pooling: str | None = None,
        preprocess: nn.Module | None = None,
        modality: str = "features",
        anchor_labels: Sequence[int] | None = None,
        projections: Sequence[str] | None = None,
        aggregation: str | None = None,
        head_config: Any = None,
        alignment_inputs: Any = None,
        **config_kwargs: Any,
    ) -> ModuleBridgePreTrainedModel:
        """Wrap ``module`` (``inputs -> (B, D)``; see :class:`ModuleEncoder`) and embed ``anchors`` (a tensor whose
        first dimension indexes the anchors) with it. Extra keyword arguments go to :class:`BridgeConfig`.
        ``alignment_inputs``: more inputs (same shape, no labels) stored after the anchors that only fit the aligned
        map when another module is attached (the alignment set, docs/method.md). ``head_config``: a
        :class:`HeadConfig`, a dict of fields, or a named head (``"paper"``, see ``HeadConfig.from_method``)."""
        check_config_kwargs(config_kwargs, "from_module", ("head_config",))
        options = {"method": method, "output": output, "pooling": pooling, "preprocess": preprocess}
        if isinstance(module, ModuleEncoder):
            options = {}
        encoder = as_module_encoder(module, **options)
        anchors = torch.as_tensor(anchors)
        if anchors.dim() == 0 or anchors.shape[0] < 2:
            raise InputError(f"a bridge needs at least 2 anchor inputs, got shape {tuple(anchors.shape)}")
        head_config, projections, aggregation = resolve_head(  # head_config="paper": a named head
            "from_module", None, head_config, projections, aggregation, config_kwargs, warn=cls.default_head is None
        )
        head_config = cls._default_head(head_config, projections, aggregation)
        anchors, anchor_labels, head_config = with_alignment(
            anchors,
            anchor_labels,
            head_config,
            alignment_inputs,
            join=lambda a, b: torch.cat([a, torch.as_tensor(b, dtype=a.dtype)]),
        )
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad():
            width = encoder(anchors[:2]).shape[1]
        encoder.train(was_training)
        config = BridgeConfig(
            encoder=None,
            encoder_name_or_path=config_kwargs.pop("encoder_name_or_path", None),
            modality=modality,
            features_dim=int(width),
            num_anchors=int(anchors.shape[0]),
            anchor_input_shape=list(anchors.shape[1:]),
            anchor_input_dtype=_dtype_name(anchors.dtype),
            anchor_labels=anchor_labels,
            encoder_class=encoder.name,
            head=head_config,
            **config_kwargs,
        )
        bridge = cls(config, encoder=encoder)
        bridge.anchors.inputs.copy_(anchors)
        bridge.refresh_anchors()
        return bridge

    # the head ``from_module`` builds without ``head_config``: None = the default head (``HeadConfig()``, relative +
    # aligned; ``attach_encoder`` fits the aligned map); a dict = those fields (a decoder needs a plain r(z))
    default_head: dict | None = None

    @classmethod
    def _default_head(cls, head_config: Any, projections: Sequence[str] | None, aggregation: str | None) -> Any:
        if head_config is None:
            head_config = dict(cls.default_head) if cls.default_head is not None else {}
        head = dict(head_config) if isinstance(head_config, dict) else head_config.to_dict()
        return {**head, **given(projections=projections, aggregation=aggregation)}

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *args: Any,
        module: nn.Module | None = None,
        module_options: dict | None = None,
        **kwargs: Any,
    ) -> ModuleBridgePreTrainedModel:
        """Load a saved module bridge; ``module=`` attaches an encoder (anchors re-embedded with it)."""
        bridge = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if module is not None:
            bridge.attach_encoder(module, **(module_options or {}))
        return bridge

    def attach_encoder(
        self, module: nn.Module, *, translation: str = "auto", relative_space: str = "auto", **options: Any
    ) -> ModuleBridgePreTrainedModel:
        """Use ``module`` as the encoder from now on and re-embed the stored anchor inputs with it (stitching).

        An aligned head (the default) also gets its translation from the new encoder into the training encoder's
        space, fitted on the anchors alone (``translation`` / ``relative_space`` as in ``from_encoder(...,
        head=...)``): the anchor embeddings held before the swap are the reference, so a head attached twice
        maps the second encoder straight into the training encoder's space. Recorded in
        ``config.head.alignment``; the label-free fit and stitch score are there too."""
        reference = stitch_reference(self)  # before the swap: the embeddings the map is fitted against
        encoder = as_module_encoder(module, **options)
        if self.config.freeze_encoder:
            encoder.requires_grad_(False)
        self.encoder = encoder
        self.config.encoder_class = encoder.name
        self._anchor_snapshot = None
        self.refresh_anchors()
        fit_bridge_alignment(self, reference, translation, relative_space)
        return self

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        # The module cannot be rebuilt from the config: save head + anchors only (the encoder travels as code).
        encoder, self.encoder = self.encoder, None
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.encoder = encoder

    # ---------------------------------------------------------------------------------------------------- anchors
    # ------------------------------------------------------------------- what a module bridge declares
    def _check_anchor_inputs(self) -> None:
        if not self.anchors.has_inputs():
            raise InputError("this bridge holds no anchor inputs: build it with from_module(module, anchors=...)")

    def _anchor_inputs(self, start: int, stop: int) -> dict[str, Any]:
        return {"inputs": self.anchors.inputs[start:stop]}

    def _encode(self, inputs: Any = None, **_: Any) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor) and inputs.dim() > 0 and inputs.shape[0] == 0:
            raise InputError("empty batch: inputs has 0 rows")
        try:
            return self.encoder(inputs)
        except RuntimeError as error:
            # The module's own error for inputs of another shape than its anchors ("mat1 and mat2 shapes cannot be
            # multiplied") names neither the bridge nor the fix. Other failures (out of memory, a bug in the module
            # on well-shaped inputs) pass through unchanged.
            expected = self.config.anchor_input_shape
            shape = list(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else None
            if isinstance(error, torch.OutOfMemoryError) or expected is None or shape is None or shape == expected:
                raise
            raise InputError(
                f"the encoder module ({self.config.encoder_class}) failed on inputs of shape "
                f"{tuple(inputs.shape)}, while this bridge's anchors are inputs of shape "
                f"(N{''.join(f', {size}' for size in expected)}): "
                f"{error}. Pass inputs of the anchors' shape, or features=... (precomputed embeddings)"
            ) from error

    def _module_relative(self, inputs, features, subspace_weights, return_subspaces=False):
        if features is None and inputs is None:
            raise InputError("pass inputs=... (what the encoder takes) or features=... (precomputed embeddings)")
        if features is None and self.encoder is None:
            raise InputError("this bridge has no encoder: pass features=... or attach_encoder(module)")
        return self.forward_features(features, subspace_weights, return_subspaces, inputs=inputs)


class ModuleBridgeModel(ModuleBridgePreTrainedModel):
    """Plain-module encoder + relative product representation r(z), without a task head."""

    def forward(
        self,
        inputs: Any = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_subspaces: bool = False,
        return_dict: bool | None = None,
    ) -> BridgeModelOutput:
        embeddings, rel = self._module_relative(inputs, features, subspace_weights, output_subspaces)
        return self._represent(embeddings, rel, output_subspaces, return_dict)


class ModuleBridgeForClassification(ModuleBridgePreTrainedModel):
    """Plain-module encoder + relative product head + MLP classifier; returns ``loss`` given ``labels``."""

    _with_classifier = True

    def forward(
        self,
        inputs: Any = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_representations: bool = False,
        return_dict: bool | None = None,
    ) -> BridgeClassifierOutput:
        embeddings, representation = self._module_relative(inputs, features, subspace_weights)
        return self._classify(embeddings, representation, labels, output_representations, return_dict)
