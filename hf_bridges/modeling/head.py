"""``RelativeProductHead``: anchors and embeddings in, product representation (and logits) out.

It knows nothing about encoders, tokenizers or files, so the same module serves the full transformers model,
the head-only Hub format and the stitching benchmark that trains on cached embeddings.
"""
from __future__ import annotations

import copy
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from .aggregation import AGGREGATIONS, build_aggregation
from .errors import ConfigError, UnknownNameError, did_you_mean
from .projections import PROJECTIONS, get_projection
from .transforms import ABS_TRANSFORMS, SUBSPACE_NORMS, build_subspace_norm, get_abs_transform


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


# ------------------------------------------------------------------------------------------------ head config
DEFAULT_PROJECTIONS = ("cosine", "euclidean", "l1", "linf")
MAX_WIDTH = 65536  # a hidden width above this is a typo (e.g. 2560000), not a head


def _fail(where: str, field_name: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{where}.{field_name}: {problem}; {fix}")


def _check_name(where: str, field_name: str, value: Any, registry) -> str:
    if not isinstance(value, str):
        raise _fail(where, field_name, f"expected a name (string), got {type(value).__name__} {value!r}",
                    f"use one of {sorted(registry)}")
    try:
        return registry.check(value)
    except UnknownNameError as error:
        raise UnknownNameError(f"{where}.{field_name}: {error}") from None


def _check_int(where: str, field_name: str, value: Any, low: int, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, field_name, f"expected an integer, got {type(value).__name__} {value!r}",
                    f"write a whole number in [{low}, {MAX_WIDTH}]" + (" or null" if allow_none else ""))
    if not low <= value <= MAX_WIDTH:
        raise _fail(where, field_name, f"{value} is out of range", f"use a value in [{low}, {MAX_WIDTH}]")
    return value


def _check_probability(where: str, field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, field_name, f"expected a number, got {type(value).__name__} {value!r}",
                    "write a probability in [0, 1)")
    if not (0.0 <= float(value) < 1.0):  # also refuses NaN
        raise _fail(where, field_name, f"{value} is out of range", "use a probability in [0, 1)")
    return float(value)


@dataclass
class HeadConfig:
    """The head's hyper-parameters, in one place: ``BridgeConfig.head``, the training config's ``head:`` mapping
    and the stitch method spec all hold this group, validated by :meth:`from_dict` before anything is allocated.

    Args:
        projections: similarity functions, one relative subspace each (see ``projections.PROJECTIONS``).
        abs_transform: ``none``, ``centering``, ``standard`` (or any registered one), fitted on the anchors.
        subspace_norm: ``layernorm``, ``batchnorm`` or ``none``, one per subspace.
        aggregation: ``concat``, ``sum``, ``mlp_sum``, ``self_attention`` or ``weighted``.
        aggregation_dim: width of the learned per-subspace maps (capped at num_anchors); ``None``: the paper's k->k.
        subspace_dropout: probability of dropping each subspace per training batch (one always survives).
        subspace_weights: per-projection weights at inference (0 drops a subspace); ``None`` keeps all.
        classifier_hidden_size: hidden width of the MLP classifier (0: a single linear layer).
        classifier_dropout: dropout inside the classifier.
    """

    projections: list = field(default_factory=lambda: list(DEFAULT_PROJECTIONS))
    abs_transform: str = "none"
    subspace_norm: str = "layernorm"
    aggregation: str = "mlp_sum"
    aggregation_dim: Optional[int] = 256
    subspace_dropout: float = 0.0
    subspace_weights: Optional[list] = None
    classifier_hidden_size: int = 256
    classifier_dropout: float = 0.1

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]], where: str = "head") -> "HeadConfig":
        """Strict: an unknown key, a wrong type or an out-of-range value raises ``ConfigError`` naming the field."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping) and hasattr(data, "to_dict") and hasattr(data, "projections"):
            data = data.to_dict()  # a HeadConfig, possibly from the remote-code copy of this file
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of head settings, got {type(data).__name__}")
        names = cls.field_names()
        unknown = [key for key in data if key not in names]
        if unknown:
            key = unknown[0]
            raise UnknownNameError(
                f"{where}: unknown head setting {key!r}{did_you_mean(key, names)}; valid: {sorted(names)}"
            )
        config = cls.__new__(cls)
        for f in fields(cls):
            default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
            setattr(config, f.name, data.get(f.name, default))
        config.validate(where)
        return config

    def validate(self, where: str = "head") -> None:
        projections = self.projections
        if isinstance(projections, str) or not isinstance(projections, (list, tuple)):
            raise _fail(where, "projections", f"expected a list of names, got {type(projections).__name__} "
                        f"{projections!r}", f"write a list, e.g. [{projections!r}]" if isinstance(projections, str)
                        else f"choose one or more of {sorted(PROJECTIONS)}")
        if not projections:
            raise ConfigError(f"{where}: projections is empty; choose one or more of {sorted(PROJECTIONS)}")
        for i, name in enumerate(projections):
            _check_name(where, f"projections[{i}]", name, PROJECTIONS)
        if len(set(projections)) != len(projections):
            raise _fail(where, "projections", f"has duplicates: {list(projections)}", "list each projection once")
        self.projections = list(projections)
        _check_name(where, "abs_transform", self.abs_transform, ABS_TRANSFORMS)
        _check_name(where, "subspace_norm", self.subspace_norm, SUBSPACE_NORMS)
        _check_name(where, "aggregation", self.aggregation, AGGREGATIONS)
        _check_int(where, "aggregation_dim", self.aggregation_dim, 1, allow_none=True)
        _check_int(where, "classifier_hidden_size", self.classifier_hidden_size, 0)
        self.subspace_dropout = _check_probability(where, "subspace_dropout", self.subspace_dropout)
        self.classifier_dropout = _check_probability(where, "classifier_dropout", self.classifier_dropout)
        weights = self.subspace_weights
        if weights is not None:
            if isinstance(weights, (str, bytes)) or not isinstance(weights, (list, tuple)) or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) for w in weights
            ):
                raise _fail(where, "subspace_weights", f"expected a list of numbers, got {weights!r}",
                            "write one weight per projection, or null")
            if len(weights) != len(projections):
                raise _fail(where, "subspace_weights", f"has {len(weights)} values for {len(projections)} projections",
                            "write one weight per projection")
            if min(weights) < 0 or sum(weights) <= 0 or any(w != w for w in weights):
                raise _fail(where, "subspace_weights", f"{list(weights)} is invalid",
                            "use weights >= 0 with a positive sum")
            self.subspace_weights = [float(w) for w in weights]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> "HeadConfig":
        """A validated copy with ``changes`` applied."""
        return HeadConfig.from_dict({**self.to_dict(), **changes})


def build_classifier(width: int, num_labels: int, hidden_size: int, dropout: float) -> nn.Module:
    """The MLP classifier on r(z) (a single linear layer when ``hidden_size`` is 0)."""
    if not hidden_size:
        return nn.Linear(width, num_labels)
    return nn.Sequential(nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_size, num_labels))


def _rename_prefix(old: str, new: str):
    """A ``load_state_dict`` pre-hook: keys ``<prefix>old...`` (the files' names) load as ``<prefix>new...``."""

    def hook(module, state_dict, prefix, *args) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)

    return hook


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
        self.mlp: Optional[nn.Module] = None
        self.register_load_state_dict_pre_hook(_rename_prefix("classifier.", "mlp."))
        if num_labels:
            self.classifier = build_classifier(
                self.aggregation.output_dim, num_labels, classifier_hidden_size, classifier_dropout
            )

    @property
    def classifier(self) -> Optional[nn.Module]:
        return self._modules.get("mlp")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(self._MODULE_ALIASES.get(name, name), value)

    @classmethod
    def from_config(
        cls, config: Any, num_anchors: Optional[int] = None, num_labels: Optional[int] = None
    ) -> "RelativeProductHead":
        """Build from a :class:`HeadConfig` (or a ``BridgeConfig``, whose ``.head`` and ``.num_anchors`` are used)."""
        if hasattr(config, "num_anchors") and hasattr(config, "head"):  # a BridgeConfig (duck-typed: remote code
            if num_anchors is None:
                num_anchors = config.num_anchors
            config = config.head  # loads these files as another module, so isinstance would miss)
        if num_anchors is None:
            raise TypeError("from_config(head_config, num_anchors, num_labels): num_anchors is required")
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
