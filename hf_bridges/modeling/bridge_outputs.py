"""Outputs of the bridge models and the classifier part every bridge with a classifier shares (loss, output).

Only relative imports of sibling files: shipped as remote code next to the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput

from .input_checks import check_class_labels, check_finite


@dataclass
class BridgeModelOutput(ModelOutput):
    """``relative_representation`` is r(z), the aggregated product of relative subspaces."""

    relative_representation: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    subspaces: torch.FloatTensor | None = None


@dataclass
class BridgeClassifierOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    relative_representation: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


class ClassifierMixin:
    """Logits, loss and output of every bridge with a classifier (text, image, plain module)."""

    _with_classifier = True

    def _classify(self, embeddings, representation, labels, output_representations: bool, return_dict) -> Any:
        logits = check_finite(self.forward_head(representation))  # finite features x 1e20 overflow float32
        loss = self.compute_loss(logits, labels) if labels is not None else None
        output = BridgeClassifierOutput(
            loss=loss,
            logits=logits,
            relative_representation=representation if output_representations else None,
            embeddings=embeddings if output_representations else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_labels = self.config.num_labels
        check_class_labels(labels, logits, num_labels, self.config.problem_type)
        if self.config.problem_type is None:
            if num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        if self.config.problem_type == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        labels = labels.view(-1)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"got {labels.shape[0]} labels for a batch of {logits.shape[0]} samples")
        if torch.compiler.is_compiling():  # checked inside the graph (no .item(), no graph break)
            torch._assert_async(
                ((labels >= 0) & (labels < num_labels)).all(), f"labels must be in [0, {num_labels - 1}]"
            )
        elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(
                f"labels must be in [0, {num_labels - 1}] for num_labels={num_labels}; got values from "
                f"{int(labels.min())} to {int(labels.max())} (set num_labels or id2label to cover every class)"
            )
        return nn.functional.cross_entropy(logits, labels)
