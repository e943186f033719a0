"""``RelativeProductHead``: anchors and embeddings in, product representation (and logits) out.

It knows nothing about encoders, tokenizers or files, so the same module serves the full transformers model,
the head-only Hub format and the stitching benchmark that trains on cached embeddings.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .aggregation import build_aggregation
from .projections import get_projection
from .transforms import build_subspace_norm, get_abs_transform


def check_anchor_embeddings(anchors: torch.Tensor) -> None:
    if anchors.dim() != 2 or anchors.shape[0] < 2:
        raise ValueError(
            f"anchor embeddings must be (num_anchors >= 2, dim), got shape {tuple(anchors.shape)}; "
            "pass at least 2 anchors"
        )
    if not torch.isfinite(anchors).all():
        raise ValueError("anchor embeddings contain NaN or inf; check the encoder and the anchor inputs")


def check_embeddings(embeddings: torch.Tensor, anchor_dim: int) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (batch, dim), got shape {tuple(embeddings.shape)}")
    if embeddings.shape[0] == 0:
        raise ValueError("empty batch: the head got 0 samples")
    if embeddings.shape[1] != anchor_dim:
        raise ValueError(
            f"embedding width {embeddings.shape[1]} differs from the anchors' width {anchor_dim}: the anchors were "
            "embedded by another encoder; call refresh_anchors() or attach the head to this encoder"
        )
    if not torch.isfinite(embeddings).all():
        bad = (~torch.isfinite(embeddings)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"the encoder produced NaN or inf embeddings for batch rows {bad[:10]}")


class RelativeProductHead(nn.Module):
    """Product of relative subspaces, one per projection, aggregated, then an optional MLP classifier."""

    def __init__(
        self,
        num_anchors: int,
        projections: Sequence[str],
        aggregation: str = "mlp_sum",
        aggregation_dim: Optional[int] = 256,
        abs_transform: str = "none",
        subspace_norm: str = "layernorm",
        num_labels: Optional[int] = None,
        classifier_hidden_size: int = 256,
        classifier_dropout: float = 0.1,
        subspace_dropout: float = 0.0,
    ):
        super().__init__()
        if num_anchors < 2:
            raise ValueError(f"a relative space needs at least 2 anchors, got {num_anchors}")
        self.projection_names = list(projections)
        self._projections = [get_projection(name).fn for name in self.projection_names]
        self._abs_transform = get_abs_transform(abs_transform)
        self.norms = nn.ModuleList(build_subspace_norm(subspace_norm, num_anchors) for _ in self.projection_names)
        self.aggregation = build_aggregation(
            aggregation, len(self.projection_names), num_anchors, aggregation_dim
        )
        self.subspace_dropout = subspace_dropout
        self.num_anchors = num_anchors
        self.classifier: Optional[nn.Module] = None
        if num_labels:
            width = self.aggregation.output_dim
            if classifier_hidden_size:
                self.classifier = nn.Sequential(
                    nn.Linear(width, classifier_hidden_size),
                    nn.GELU(),
                    nn.Dropout(classifier_dropout),
                    nn.Linear(classifier_hidden_size, num_labels),
                )
            else:
                self.classifier = nn.Linear(width, num_labels)

    @classmethod
    def from_config(cls, config, num_labels: Optional[int] = None) -> "RelativeProductHead":
        return cls(
            num_anchors=config.num_anchors,
            projections=config.projections,
            aggregation=config.aggregation,
            aggregation_dim=config.aggregation_dim,
            abs_transform=config.abs_transform,
            subspace_norm=config.subspace_norm,
            num_labels=num_labels,
            classifier_hidden_size=config.classifier_hidden_size,
            classifier_dropout=config.classifier_dropout,
            subspace_dropout=config.subspace_dropout,
        )

    def relative_subspaces(self, embeddings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """The raw relative subspaces, stacked (B, n, k), before normalisation."""
        check_anchor_embeddings(anchors)
        check_embeddings(embeddings, anchors.shape[1])
        x, a = self._abs_transform(embeddings, anchors.to(embeddings.dtype))
        return torch.stack([project(x, a) for project in self._projections], dim=1)

    def _training_mask(self, n: int, device: torch.device) -> torch.Tensor:
        """Subspace dropout: a random non-empty subset of the subspaces for this batch."""
        keep = torch.rand(n, device=device) >= self.subspace_dropout
        if not keep.any():
            keep[torch.randint(n, (1,), device=device)] = True
        return keep.float()

    def represent(
        self,
        embeddings: torch.Tensor,
        anchors: torch.Tensor,
        subspace_weights: Optional[torch.Tensor] = None,
        return_subspaces: bool = False,
    ):
        """r(z): normalise each subspace, then aggregate with the (optional) subspace weights."""
        raw = self.relative_subspaces(embeddings, anchors)
        normed = torch.stack([norm(raw[:, i]) for i, norm in enumerate(self.norms)], dim=1)
        weights = subspace_weights
        if self.training and self.subspace_dropout > 0:
            mask = self._training_mask(normed.shape[1], normed.device)
            weights = mask if weights is None else weights.to(mask) * mask
            if weights.sum() == 0:
                weights = mask
        representation = self.aggregation(normed, weights)
        return (representation, normed) if return_subspaces else representation

    def forward(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, subspace_weights: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Logits when the head has a classifier, else the product representation."""
        representation = self.represent(embeddings, anchors, subspace_weights)
        return self.classifier(representation) if self.classifier is not None else representation
