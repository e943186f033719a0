"""``BridgeForReconstruction``: a *relative decoder* maps the product representation r(z) back to the input space,
as in the paper, so a decoder trained on one autoencoder's encoder decodes another, independently trained, one.

Saved / loaded / re-attached like every module bridge (``from_pretrained(path, module=other_encoder)`` is zero-shot
decoder stitching). The experiment that trains and stitches them lives in ``hf_bridges.stitching.reconstruction``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..modeling.configuration_bridge import LEGACY_DEFAULTS, BridgeConfig
from ..modeling.registry import ConfigError, InputError
from .modeling import ModuleBridgePreTrainedModel


@dataclass
class ReconstructionOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    relative_representation: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


def _targets(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Targets in the decoder's space: uint8 images become 0-1 floats; the shape must match."""
    target = labels.float() / 255.0 if labels.dtype == torch.uint8 else labels.to(like.dtype)
    if target.numel() != like.numel():
        raise InputError(
            f"labels (the reconstruction targets) have shape {tuple(labels.shape)}, the decoder outputs "
            f"{tuple(like.shape)}; pass the original inputs (reshaped to output_shape) as labels"
        )
    return target.reshape(like.shape)


class BridgeForReconstruction(ModuleBridgePreTrainedModel):
    """Relative decoder: r(z) -> the input space (``config.output_shape``), trained with MSE.

    Config keys (pass them to ``from_module``): ``output_shape`` (e.g. ``[1, 28, 28]``), ``decoder_hidden_size``
    (default 256), ``decoder_activation`` (``sigmoid`` for 0-1 images, default; or ``none``).
    """

    _with_classifier = False
    # a decoder reads one relative representation r(z): the relative product head of 0.1.0 (no aligned component)
    default_head = {key: value for key, value in LEGACY_DEFAULTS.items() if key != "combine"}

    def __init__(self, config: BridgeConfig, encoder: nn.Module | None = None):
        shape = config.output_shape
        if not shape or any(int(s) < 1 for s in shape):
            raise ConfigError("BridgeForReconstruction needs output_shape=[C, H, W] (or [D]) in its config")
        activation = config.decoder_activation
        if activation not in ("sigmoid", "none"):
            raise ConfigError(f"unknown decoder_activation {activation!r}; valid: ['none', 'sigmoid']")
        super().__init__(config, encoder=encoder)
        hidden = config.decoder_hidden_size
        width = self.head.aggregation.output_dim
        self.decoder = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, math.prod(int(s) for s in shape)),
        )

    def forward(
        self,
        inputs: Any = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ReconstructionOutput:
        embeddings, representation = self._module_relative(inputs, features, subspace_weights)
        out = self.decoder(representation).view(-1, *[int(s) for s in self.config.output_shape])
        if self.config.decoder_activation == "sigmoid":
            out = torch.sigmoid(out)
        loss = nn.functional.mse_loss(out, _targets(labels, out)) if labels is not None else None
        output = ReconstructionOutput(
            loss=loss, reconstruction=out, relative_representation=representation, embeddings=embeddings
        )
        return output if return_dict is not False else output.to_tuple()
