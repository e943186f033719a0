"""``RelativeProductHead``: anchors and embeddings in, product representation (and logits) out.

It knows nothing about encoders, tokenizers or files, so the same module serves the full transformers model,
the head-only Hub format and the stitching benchmark that trains on cached embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .aggregation import build_aggregation
from .head_checks import check_anchor_embeddings, check_embeddings
from .head_config import (  # noqa: F401  (re-exported: HeadConfig has always been importable from here)
    COMBINES,
    DEFAULT_PROJECTIONS,
    LEGACY_DEFAULTS,
    MAX_WIDTH,
    RELATIVE_SPACES,
    HeadConfig,
)
from .projections import get_projection
from .transforms import (
    FITTED_ABS_TRANSFORMS,
    anchor_mean_std,
    apply_fitted,
    build_subspace_norm,
    fitted_on_anchors,
    get_abs_transform,
)


def build_classifier(width: int, num_labels: int, hidden_size: int, dropout: float) -> nn.Module:
    """The MLP classifier on r(z) (a single linear layer when ``hidden_size`` is 0)."""
    if not hidden_size:
        return nn.Linear(width, num_labels)
    return nn.Sequential(
        nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_size, num_labels)
    )


def _rename_prefix(old: str, new: str):
    """A ``load_state_dict`` pre-hook: keys ``<prefix>old...`` (the files' names) load as ``<prefix>new...``."""

    def hook(module, state_dict, prefix, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)

    return hook


class SummedClassifier(nn.Module):
    """One MLP per component of ``r(z) = [relative, aligned]``; the logits of the present components are averaged.

    A component is absent for a sample when its part of ``r(z)`` is exactly zero (``represent`` zeroes a dropped
    component), so ``classifier(head.represent(...))`` equals ``head(...)`` and the model's forward_head contract
    holds. Averaging (not summing) keeps one component alone on the scale the classifiers were trained on."""

    def __init__(self, relative_dim: int, aligned_dim: int, num_labels: int, hidden_size: int, dropout: float):
        super().__init__()
        self.relative_dim = relative_dim
        self.relative = build_classifier(relative_dim, num_labels, hidden_size, dropout)
        self.aligned = build_classifier(aligned_dim, num_labels, hidden_size, dropout)

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        parts = (representation[:, : self.relative_dim], representation[:, self.relative_dim :])
        logits = torch.stack([self.relative(parts[0]), self.aligned(parts[1])], dim=1)  # (B, 2, C)
        present = torch.stack([(part != 0).any(dim=1) for part in parts], dim=1).to(logits.dtype)  # (B, 2)
        present = torch.where(present.sum(1, keepdim=True) > 0, present, torch.ones_like(present))
        return (logits * present[..., None]).sum(1) / present.sum(1, keepdim=True)


class RelativeProductHead(nn.Module):
    """Product of relative subspaces, one per projection, aggregated, then an optional MLP classifier.

    The classifier MLP is registered as ``mlp`` (``classifier`` is an alias for reading and assigning): peft's
    SEQ_CLS recipe wraps every module whose path ends in ``classifier``/``score``, and the bridge registers this
    whole head as ``score``, so one wrapper must cover it (a nested ``score.classifier`` would be wrapped twice).
    Head-only files keep the historic ``classifier.*`` names; ``load_state_dict`` accepts both.
    """

    _MODULE_ALIASES = {"classifier": "mlp"}

    def __init__(
        self,
        num_anchors: int,
        projections: Sequence[str],
        aggregation: str = "mlp_sum",
        aggregation_dim: int | None = 256,
        abs_transform: str = "none",
        subspace_norm: str = "layernorm",
        num_labels: int | None = None,
        classifier_hidden_size: int = 256,
        classifier_dropout: float = 0.1,
        subspace_dropout: float = 0.0,
        aligned: bool = False,
        aligned_dim: int | None = None,
        aligned_input_dim: int | None = None,
        component_dropout: float = 0.0,
        combine: str = "concat",
        relative_space: str = "native",
        relative_anchors: int | None = None,
    ):
        super().__init__()
        if num_anchors < 2:
            raise ValueError(f"a relative space needs at least 2 anchors, got {num_anchors}")
        relative_anchors = num_anchors if relative_anchors is None else int(relative_anchors)
        if not 2 <= relative_anchors <= num_anchors:
            raise ValueError(f"relative_anchors must be in [2, num_anchors={num_anchors}], got {relative_anchors}")
        if relative_anchors < num_anchors and not aligned:
            raise ValueError(
                f"relative_anchors={relative_anchors} < num_anchors={num_anchors}: the other anchors only fit the "
                "aligned map, and this head has no aligned component (aligned=False); pass only the relative anchors"
            )
        self.projection_names = list(projections)
        self.abs_transform_name = abs_transform
        self._projections = [get_projection(name).fn for name in self.projection_names]
        self._abs_transform = get_abs_transform(abs_transform)
        k = relative_anchors  # the relative subspaces' width; the rest of the anchors only fit the aligned map
        self.norms = nn.ModuleList(build_subspace_norm(subspace_norm, k) for _ in self.projection_names)
        self.aggregation = build_aggregation(aggregation, len(self.projection_names), k, aggregation_dim)
        self.subspace_dropout = subspace_dropout
        self.component_dropout = component_dropout
        self.num_anchors = num_anchors
        self.relative_anchors = k
        self.aligned = bool(aligned)
        self.aligned_dim = 0
        if self.aligned:
            if not aligned_dim:
                raise ValueError("an aligned head needs aligned_dim (the training encoder's width)")
            self.aligned_dim = int(aligned_dim)
            self.aligned_norm = nn.LayerNorm(self.aligned_dim)
            self.reset_alignment(int(aligned_input_dim or aligned_dim))
        self.output_dim = self.aggregation.output_dim + self.aligned_dim
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; valid: {list(COMBINES)}")
        self.combine = combine if self.aligned else "concat"
        self.relative_space = "native"
        if self.aligned and relative_space == "translated":  # filled by load_state_dict (the stitched head's buffer)
            self.set_relative_space(torch.zeros(k, self.aligned_dim))
        self._classifier_shape = (classifier_hidden_size, classifier_dropout)
        self.mlp: nn.Module | None = None
        self.register_load_state_dict_pre_hook(_rename_prefix("classifier.", "mlp."))
        if num_labels:
            self.reset_classifier(num_labels)

    def reset_classifier(self, num_labels: int) -> None:
        """A fresh classifier (one per component for ``combine='sum'``, else one MLP on r(z))."""
        hidden, dropout = self._classifier_shape
        old = self.classifier
        if self.combine == "sum":
            self.classifier = SummedClassifier(
                self.aggregation.output_dim, self.aligned_dim, num_labels, hidden, dropout
            )
        else:
            self.classifier = build_classifier(self.output_dim, num_labels, hidden, dropout)
        if old is not None:
            param = next(old.parameters())
            self.classifier.to(param.device, param.dtype)

    @property
    def classifier(self) -> nn.Module | None:
        return self._modules.get("mlp")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(self._MODULE_ALIASES.get(name, name), value)

    @classmethod
    def from_config(
        cls,
        config: Any,
        num_anchors: int | None = None,
        num_labels: int | None = None,
        embedding_dim: int | None = None,
    ) -> RelativeProductHead:
        """Build from a :class:`HeadConfig` (or a ``BridgeConfig``, whose ``.head``, ``.num_anchors`` and
        ``.hidden_size`` are used). ``embedding_dim``: the current encoder's width (the aligned map's input)."""
        bridge = None
        if hasattr(config, "num_anchors") and hasattr(config, "head"):
            bridge = config  # a BridgeConfig (duck-typed: remote code
            if num_anchors is None:
                num_anchors = config.num_anchors
            config = config.head  # loads these files as another module, so isinstance would miss)
        if num_anchors is None:
            raise TypeError("from_config(head_config, num_anchors, num_labels): num_anchors is required")
        if embedding_dim is None and bridge is not None:
            embedding_dim = bridge.hidden_size or None
        if config.aligned and config.aligned_dim is None:
            if embedding_dim is None:
                raise ValueError("an aligned head needs aligned_dim (the training encoder's width) or embedding_dim")
            config.aligned_dim = int(embedding_dim)  # recorded: the config now names the training encoder's width
        return cls(
            num_anchors=num_anchors,
            projections=config.projections,
            aggregation=config.aggregation,
            aggregation_dim=config.aggregation_dim,
            abs_transform=config.abs_transform,
            subspace_norm=config.subspace_norm,
            num_labels=num_labels,
            classifier_hidden_size=config.classifier_hidden_size,
            classifier_dropout=config.classifier_dropout,
            subspace_dropout=config.subspace_dropout,
            aligned=config.aligned,
            aligned_dim=config.aligned_dim,
            aligned_input_dim=embedding_dim,
            component_dropout=config.component_dropout,
            combine=config.combine,
            relative_space=(config.alignment or {}).get("relative_space", "native"),
            relative_anchors=config.relative_anchors,
        )

    # ------------------------------------------------------------------------------------------ aligned component
    def reset_alignment(self, input_dim: int) -> None:
        """Identity map (zero-padded / cut for another width): the head on its training encoder."""
        old = getattr(self, "aligned_weight", None)
        device = old.device if old is not None else None  # no value checks: this also runs on the meta device
        self.register_buffer("aligned_weight", torch.eye(input_dim, self.aligned_dim, device=device))
        self.register_buffer("aligned_bias", torch.zeros(self.aligned_dim, device=device))
        self.set_relative_space(None)

    def set_relative_space(self, training_anchors: torch.Tensor | None) -> None:
        """``None``: the relative component reads the current encoder's own embeddings and anchors ("native").
        A (relative_anchors, aligned_dim) tensor: the training encoder's relative anchors in its standardised space;
        the relative component then reads the mapped embeddings ``std(z) @ R + b`` against them ("translated": exact
        under any affine map the translation recovers). Saved with the weights as ``aligned_anchors``."""
        if training_anchors is None:
            if "aligned_anchors" in self._buffers:
                del self._buffers["aligned_anchors"]
            self.relative_space = "native"
            return
        if training_anchors.dim() != 2 or training_anchors.shape != (self.relative_anchors, self.aligned_dim):
            raise ValueError(
                f"training anchors for the translated relative space must be ({self.relative_anchors}, "
                f"{self.aligned_dim}), got {tuple(training_anchors.shape)}"
            )
        old = getattr(self, "aligned_weight", None)
        device = old.device if old is not None else None
        self.register_buffer("aligned_anchors", training_anchors.detach().float().to(device).contiguous())
        self.relative_space = "translated"

    def set_alignment(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """The map ``std(z) @ weight + bias`` from the current encoder's anchor-standardised space into the
        training encoder's (fitted at attach time, see ``translation.fit_translation``); saved with the weights."""
        if not self.aligned:
            raise ValueError("this head has no aligned component (aligned=False)")
        if weight.dim() != 2 or weight.shape[1] != self.aligned_dim or tuple(bias.shape) != (self.aligned_dim,):
            raise ValueError(
                f"alignment must be (D, {self.aligned_dim}) + ({self.aligned_dim},), got "
                f"{tuple(weight.shape)} + {tuple(bias.shape)}"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise ValueError("the alignment map holds NaN or inf; refit it on finite anchor embeddings")
        old = getattr(self, "aligned_weight", None)
        device = old.device if old is not None else None
        self.register_buffer("aligned_weight", weight.detach().float().to(device).contiguous())
        self.register_buffer("aligned_bias", bias.detach().float().to(device).contiguous())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a stitched head's map has the new encoder's width: take the saved shape before loading
        key = prefix + "aligned_weight"
        if self.aligned and key in state_dict and state_dict[key].shape != self.aligned_weight.shape:
            self.reset_alignment(int(state_dict[key].shape[0]))
        if self.aligned and prefix + "aligned_anchors" in state_dict and self.relative_space == "native":
            self.set_relative_space(torch.zeros(self.relative_anchors, self.aligned_dim))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def aligned_inputs(self, embeddings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """``std(z) @ R + b`` before the LayerNorm: the samples in the training encoder's standardised space."""
        if embeddings.shape[1] != self.aligned_weight.shape[0]:
            raise ValueError(
                f"the aligned component maps width {self.aligned_weight.shape[0]}, got {embeddings.shape[1]}: attach "
                "the head to this encoder so the map is fitted to it (from_encoder(encoder, head=...); on a built bridge "
                "attach_encoder(module) or stitch_anchor_embeddings(...))"
            )
        dtype = embeddings.dtype  # anchor statistics computed once per anchors tensor (transforms.fitted_on_anchors)
        mean, std = fitted_on_anchors(anchors, ("aligned", dtype), lambda: anchor_mean_std(anchors.to(dtype)))
        weight = self.aligned_weight.to(embeddings.dtype)
        return ((embeddings - mean) / std) @ weight + self.aligned_bias.to(embeddings.dtype)

    def relative_subspaces(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, mapped: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The raw relative subspaces, stacked (B, n, k), before normalisation. ``mapped``: the samples'
        ``aligned_inputs`` when the caller has them already (the translated space reads them)."""
        fitted_on_anchors(anchors, ("checked",), lambda: check_anchor_embeddings(anchors) or True)
        check_embeddings(embeddings, anchors.shape[1])
        given = anchors
        anchors = self.relative_slice(anchors)
        if self.relative_space == "translated":  # mapped samples against the training encoder's anchors
            embeddings = self.aligned_inputs(embeddings, anchors) if mapped is None else mapped
            given = anchors = self.aligned_anchors
        fit, dtype = FITTED_ABS_TRANSFORMS.get(self._abs_transform), embeddings.dtype
        if fit is None:
            x, a = self._abs_transform(embeddings, anchors.to(dtype))
        else:  # the anchors' side fitted once per anchors tensor, the samples' side applied per call
            params, a = fitted_on_anchors(
                given, ("abs", fit, self.relative_anchors, dtype), lambda: fit(anchors.to(dtype))
            )
            x = apply_fitted(params, embeddings)
        return torch.stack([project(x, a) for project in self._projections], dim=1)

    def relative_slice(self, anchors: torch.Tensor) -> torch.Tensor:
        """The anchors the relative subspaces read: the first ``relative_anchors`` (all of them unless the head
        keeps an alignment set, anchors that only fit the aligned map)."""
        if self.relative_anchors == self.num_anchors:
            return anchors
        if anchors.shape[0] != self.num_anchors:
            raise ValueError(
                f"this head reads {self.num_anchors} anchors ({self.relative_anchors} relative + "
                f"{self.num_anchors - self.relative_anchors} for the aligned map), got {anchors.shape[0]}"
            )
        return anchors[: self.relative_anchors]

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the head computes in: its parameters' (float32 unless the model was cast with ``.to()`` /
        ``.half()``). Embeddings and anchors of any float dtype are cast to it at the boundary
        (docs/method.md#precision)."""
        floats = (t.dtype for t in (*self.parameters(), *self.buffers()) if t.is_floating_point())
        return next(floats, torch.float32)

    def _training_mask(self, n: int, device: torch.device) -> torch.Tensor:
        """Subspace dropout: a random non-empty subset of the subspaces for this batch."""
        keep = torch.rand(n, device=device) >= self.subspace_dropout
        if torch.compiler.is_compiling():  # the same rule without a data-dependent branch (no graph break)
            fallback = torch.zeros_like(keep).index_fill_(0, torch.randint(n, (1,), device=device), True)
            keep = torch.where(keep.any(), keep, fallback)
        elif not keep.any():
            keep[torch.randint(n, (1,), device=device)] = True
        return keep.float()

    def represent(
        self,
        embeddings: torch.Tensor,
        anchors: torch.Tensor,
        subspace_weights: torch.Tensor | None = None,
        return_subspaces: bool = False,
    ):
        """r(z): normalise each subspace, then aggregate with the (optional) subspace weights. Computed in
        :attr:`compute_dtype` whatever the embeddings' dtype (bf16 / fp16 / float64 features included)."""
        dtype = self.compute_dtype
        embeddings, anchors = embeddings.to(dtype), anchors.to(dtype)
        mapped = None
        if self.aligned:  # mapped once, for both components (checked first: a wrong width names the width)
            fitted_on_anchors(anchors, ("checked",), lambda: check_anchor_embeddings(anchors) or True)
            check_embeddings(embeddings, anchors.shape[1])
            mapped = self.aligned_inputs(embeddings, anchors)
        raw = self.relative_subspaces(embeddings, anchors, mapped)
        normed = torch.stack([norm(raw[:, i]) for i, norm in enumerate(self.norms)], dim=1)
        if self.aligned:
            return self._represent_aligned(mapped, normed, subspace_weights, return_subspaces)
        weights = subspace_weights
        if self.training and self.subspace_dropout > 0:
            mask = self._training_mask(normed.shape[1], normed.device)
            weights = mask if weights is None else weights.to(mask) * mask
            if weights.sum() == 0:
                weights = mask
        representation = self.aggregation(normed, weights)
        return (representation, normed) if return_subspaces else representation

    def _represent_aligned(self, mapped, normed, subspace_weights, return_subspaces):
        """[aggregation(relative subspaces), LayerNorm(aligned)], each component weighted (0 drops it).

        ``combine='sum'``: a dropped component's part is exactly zero (the summed classifier then averages the
        other component's logits alone); weights > 0 act inside the relative aggregation, the aligned part is kept
        as is. ``concat``: the aligned part is scaled by its weight."""
        n = normed.shape[1]
        aligned = self.aligned_norm(mapped)
        summed = self.combine == "sum"
        if subspace_weights is not None:
            weights = torch.as_tensor(subspace_weights).to(normed)
            if weights.shape[-1] != n + 1:
                raise ValueError(
                    f"subspace_weights needs {n + 1} values ({n} projections + the aligned component), "
                    f"got {weights.shape[-1]}"
                )
            relative_w, aligned_w = weights[:n], weights[n]
            # all relative weights 0: the component is absent (zeros). Branch-free, so torch.compile keeps one graph.
            present = relative_w.sum() > 0
            relative = self.aggregation(normed, torch.where(present, relative_w, torch.ones_like(relative_w)))
            relative = relative * present.to(relative.dtype)
            aligned_scale = (aligned_w > 0).to(normed) if summed else aligned_w
            representation = torch.cat([relative, aligned * aligned_scale], dim=1)
        elif self.training and self.component_dropout > 0:
            keep = (torch.rand(normed.shape[0], n + 1, device=normed.device) >= self.component_dropout).to(normed)
            dead = keep.sum(1) == 0
            if torch.compiler.is_compiling():  # the same rule without a data-dependent branch (no graph break)
                pick = torch.randint(n + 1, (normed.shape[0],), device=normed.device)
                keep = torch.where(dead[:, None], nn.functional.one_hot(pick, n + 1).to(keep), keep)
            elif dead.any():
                keep[dead, torch.randint(n + 1, (int(dead.sum()),), device=normed.device)] = 1.0
            relative = self.aggregation(normed * keep[:, :n, None])
            if summed:  # all relative subspaces dropped: the component is absent, not the aggregation's bias
                relative = relative * (keep[:, :n].sum(1, keepdim=True) > 0).to(relative)
            representation = torch.cat([relative, aligned * keep[:, n:]], dim=1)
        else:
            representation = torch.cat([self.aggregation(normed), aligned], dim=1)
        return (representation, normed) if return_subspaces else representation

    def forward(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, subspace_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits when the head has a classifier, else the product representation."""
        representation = self.represent(embeddings, anchors, subspace_weights)
        return self.classifier(representation) if self.classifier is not None else representation
