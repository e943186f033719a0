"""``HeadConfig``: the head's hyper-parameters in one validated group (``BridgeConfig.head``, the training config's
``head:`` mapping, the stitch method spec), and what older files meant by an absent key (``LEGACY_DEFAULTS``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .aggregation import AGGREGATIONS
from .errors import ConfigError, UnknownNameError, did_you_mean
from .projections import PROJECTIONS
from .transforms import ABS_TRANSFORMS, SUBSPACE_NORMS

# ------------------------------------------------------------------------------------------------ head config
DEFAULT_PROJECTIONS = ("cosine", "euclidean", "l1", "linf")
MAX_WIDTH = 65536  # a hidden width above this is a typo (e.g. 2560000), not a head


def _fail(where: str, field_name: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{where}.{field_name}: {problem}; {fix}")


def _check_name(where: str, field_name: str, value: Any, registry) -> str:
    if not isinstance(value, str):
        raise _fail(
            where,
            field_name,
            f"expected a name (string), got {type(value).__name__} {value!r}",
            f"use one of {sorted(registry)}",
        )
    try:
        return registry.check(value)
    except UnknownNameError as error:
        raise UnknownNameError(f"{where}.{field_name}: {error}") from None


def _check_int(where: str, field_name: str, value: Any, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(
            where,
            field_name,
            f"expected an integer, got {type(value).__name__} {value!r}",
            f"write a whole number in [{low}, {MAX_WIDTH}]" + (" or null" if allow_none else ""),
        )
    if not low <= value <= MAX_WIDTH:
        raise _fail(where, field_name, f"{value} is out of range", f"use a value in [{low}, {MAX_WIDTH}]")
    return value


def _check_probability(where: str, field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(
            where,
            field_name,
            f"expected a number, got {type(value).__name__} {value!r}",
            "write a probability in [0, 1)",
        )
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
        aligned: add the aligned component ``LayerNorm(std(z) @ R + b)`` (the training encoder's anchor-standardised
            absolute embedding; ``R``/``b`` are identity/zero on the training encoder and fitted on the anchors
            when the head is attached to another encoder). It joins the product AFTER the aggregation of the
            relative subspaces: ``r(z) = [aggregation(subspaces), aligned]``, so any aggregation works.
        aligned_dim: width of the aligned component (the training encoder's width); ``None``: set from the encoder.
        component_dropout: per-sample probability of dropping each component (each relative subspace and the
            aligned one; one always survives) while training, so the head accepts any non-empty subset.
        combine: how the two components of an aligned head meet the classifier. ``sum`` (default): each component
            has its own MLP classifier and the logits of the kept components are averaged (a weight of 0 drops a
            component); ``concat``: one MLP on ``r(z)``. Heads without the aligned component have one classifier.
        relative_anchors: how many of the anchors (the first ones) the relative subspaces read; the others, the
            *alignment set*, only add pairs to the aligned map's fit at attach time (they cost an attach more
            embeddings; at inference only the aligned standardisation reads them). ``None``: all. Needs ``aligned``.
        alignment: the record of the attach-time fit (``map``, residuals, ``fit``, ``relative_space``,
            ``stitch_score``); ``None`` on the training encoder. ``relative_space: translated`` makes the relative
            component read the mapped embeddings against the training encoder's anchors (stored with the weights).

    The defaults are the default head (issue 9, "aligned product, summed"): one cosine subspace on
    anchor-standardised embeddings plus the aligned component, one classifier each, logits averaged, trained with
    component dropout 0.3. Configs saved before a field existed read it from :data:`LEGACY_DEFAULTS`
    (``from_dict(..., legacy=True)``). ``subspace_weights`` holds one weight per projection, then one for the
    aligned component when ``aligned``.
    """

    projections: list = field(default_factory=lambda: ["cosine"])
    abs_transform: str = "standard"
    subspace_norm: str = "layernorm"
    aggregation: str = "concat"
    aggregation_dim: int | None = 256
    subspace_dropout: float = 0.0
    subspace_weights: list | None = None
    classifier_hidden_size: int = 256
    classifier_dropout: float = 0.1
    aligned: bool = True
    aligned_dim: int | None = None
    component_dropout: float = 0.3
    combine: str = "sum"
    relative_anchors: int | None = None
    alignment: dict | None = None

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def num_components(self) -> int:
        """Relative subspaces plus the aligned component: the length of ``subspace_weights``."""
        return len(self.projections) + int(bool(self.aligned))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "head", legacy: bool = False) -> HeadConfig:
        """Strict: an unknown key, a wrong type or an out-of-range value raises ``ConfigError`` naming the field.

        ``legacy=True`` (a config saved by an older release): absent keys take :data:`LEGACY_DEFAULTS`, the defaults
        of the release that wrote it, not today's."""
        if data is None and not legacy:
            return cls()
        data = {} if data is None else data
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
            if legacy and f.name in LEGACY_DEFAULTS:
                default = copy.deepcopy(LEGACY_DEFAULTS[f.name])
            setattr(config, f.name, data.get(f.name, default))
        config.validate(where)
        return config

    def validate(self, where: str = "head") -> None:
        projections = self.projections
        if isinstance(projections, str) or not isinstance(projections, (list, tuple)):
            raise _fail(
                where,
                "projections",
                f"expected a list of names, got {type(projections).__name__} {projections!r}",
                f"write a list, e.g. [{projections!r}]"
                if isinstance(projections, str)
                else f"choose one or more of {sorted(PROJECTIONS)}",
            )
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
        self.component_dropout = _check_probability(where, "component_dropout", self.component_dropout)
        if not isinstance(self.aligned, bool):
            raise _fail(where, "aligned", f"expected true or false, got {self.aligned!r}", "write true or false")
        _check_int(where, "aligned_dim", self.aligned_dim, 1, allow_none=True)
        if self.combine not in COMBINES:
            raise _fail(
                where,
                "combine",
                f"unknown value {self.combine!r}{did_you_mean(str(self.combine), COMBINES)}",
                f"use one of {list(COMBINES)}",
            )
        _check_int(where, "relative_anchors", self.relative_anchors, 2, allow_none=True)
        if self.relative_anchors is not None and not self.aligned:
            raise _fail(
                where,
                "relative_anchors",
                "an alignment set (anchors beyond relative_anchors) only fits the aligned map, and aligned is false",
                "set aligned: true or drop relative_anchors",
            )
        self.alignment = _check_alignment(where, self.alignment)
        weights = self.subspace_weights
        if weights is not None:
            if (
                isinstance(weights, (str, bytes))
                or not isinstance(weights, (list, tuple))
                or any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in weights)
            ):
                raise _fail(
                    where,
                    "subspace_weights",
                    f"expected a list of numbers, got {weights!r}",
                    "write one weight per projection, or null",
                )
            if len(weights) != self.num_components:
                what = f"{len(projections)} projections" + (" + the aligned component" if self.aligned else "")
                raise _fail(
                    where,
                    "subspace_weights",
                    f"has {len(weights)} values for {what}",
                    "write one weight per projection"
                    + (", then one for the aligned component" if self.aligned else ""),
                )
            if min(weights) < 0 or sum(weights) <= 0 or any(w != w for w in weights):
                raise _fail(
                    where, "subspace_weights", f"{list(weights)} is invalid", "use weights >= 0 with a positive sum"
                )
            self.subspace_weights = [float(w) for w in weights]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> HeadConfig:
        """A validated copy with ``changes`` applied."""
        return HeadConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_method(cls, name: str, **overrides: Any) -> HeadConfig:
        """Exactly the head of a named method (:data:`METHODS`: ``paper``, ``default`` and the stitch benchmark's
        rows ``cosine``, ``cosine+std``, ``product-mlp_sum``, ...), then ``overrides`` (any fields) on top."""
        if not isinstance(name, str) or name not in METHODS:
            shown = name if isinstance(name, str) else repr(name)
            raise UnknownNameError(
                f"unknown head method {shown!r}{did_you_mean(str(name), METHODS)}; valid: {sorted(METHODS)}"
            )
        return method_head(**{**METHODS[name], **overrides})


def _check_alignment(where: str, record: Any) -> dict | None:
    """The attach record: a flat JSON mapping; ``relative_space`` (if given) is ``native`` or ``translated``."""
    if record is None:
        return None
    if (
        not isinstance(record, Mapping)
        or any(not isinstance(key, str) for key in record)
        or any(value is not None and not isinstance(value, (str, int, float, bool)) for value in record.values())
    ):
        raise _fail(
            where,
            "alignment",
            f"expected a flat mapping of names to values, got {record!r}",
            "leave it to the attach (null on the training encoder)",
        )
    if record.get("relative_space", "native") not in RELATIVE_SPACES:
        raise _fail(
            where,
            "alignment.relative_space",
            f"unknown value {record.get('relative_space')!r}",
            f"use one of {list(RELATIVE_SPACES)}",
        )
    return dict(record)


COMBINES = ("sum", "concat")
RELATIVE_SPACES = ("native", "translated")

# What a config saved before a field existed meant (absent keys of old files). Format-1/2 files hold every older
# field explicitly, so only the fields added since need an entry; the old defaults of the changed fields are kept
# too, for hand-written old-style configs.
LEGACY_DEFAULTS: dict[str, Any] = {
    "projections": list(DEFAULT_PROJECTIONS),
    "abs_transform": "none",
    "aggregation": "mlp_sum",
    "aligned": False,
    "aligned_dim": None,
    "component_dropout": 0.0,
    "combine": "concat",  # the first aligned heads (format 2 without this key) had one classifier on r(z)
}


# ------------------------------------------------------------------------------------------------ named methods
PAPER_PROJECTIONS = ["cosine", "euclidean", "l1", "linf"]


def method_head(
    kind: str = "relative",
    projections: Any = ("cosine",),
    aggregation: str = "concat",
    abs_transform: str = "none",
    subspace_dropout: float = 0.0,
    where: str = "method head",
    **shared: Any,
) -> HeadConfig:
    """The head of a method: one definition for the API (``HeadConfig.from_method``, ``from_encoder(method=...)``)
    and the stitch benchmark (``MethodSpec.head_config``), so a name means one head everywhere.

    ``relative``: relative subspaces only, as in the paper (no aligned component, one classifier, no component
    dropout): ``projections`` / ``aggregation`` / ``abs_transform`` / ``subspace_dropout`` as given, every other
    field HeadConfig's default. ``default``: ``HeadConfig()`` itself (what ``from_encoder`` builds with no head
    arguments). ``shared``: fields set on top (the benchmark's shared ``head:`` settings, a caller's overrides)."""
    if kind == "default":
        return HeadConfig.from_dict({**HeadConfig().to_dict(), **shared}, where=where)
    if kind != "relative":
        raise ConfigError(f"unknown head method kind {kind!r}; valid: ['default', 'relative']")
    base = {"aligned": False, "combine": "concat", "component_dropout": 0.0}
    method = {
        "projections": list(projections) if isinstance(projections, tuple) else projections,
        "aggregation": aggregation,
        "abs_transform": abs_transform,
        "subspace_dropout": subspace_dropout,
    }
    return HeadConfig.from_dict({**base, **method, **shared}, where=where)


# The named heads. The stitch configs' method rows carry these names (tests/test_journeys_model.py checks that every
# shipped row named here builds this head); ``paper`` is the paper's MLP+Sum product exactly (k->k maps), while the
# benchmark row ``product-mlp_sum`` uses the shared k->256 maps. Attach-time choices (``+select`` rows) are not
# heads: from_encoder(..., head=..., subspace_selection=...) applies them.
METHODS: dict[str, dict[str, Any]] = {
    "paper": {"projections": PAPER_PROJECTIONS, "aggregation": "mlp_sum", "aggregation_dim": None},
    "default": {"kind": "default"},
    "cosine": {"projections": ["cosine"]},
    "euclidean": {"projections": ["euclidean"]},
    "l1": {"projections": ["l1"]},
    "linf": {"projections": ["linf"]},
    "cosine+std": {"projections": ["cosine"], "abs_transform": "standard"},
    "cosine+whiten": {"projections": ["cosine"], "abs_transform": "whiten"},
    **{
        f"product-{aggregation}": {"projections": PAPER_PROJECTIONS, "aggregation": aggregation}
        for aggregation in ("concat", "mlp_sum", "sum", "self_attention", "weighted")
    },
}
