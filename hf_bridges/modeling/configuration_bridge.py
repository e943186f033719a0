"""The configurations: :class:`HeadConfig` (the head's hyper-parameters, the one list of head fields) and
:class:`BridgeConfig` (a declarative transformers 5 config: ``@strict`` typed fields, the encoder's config as a
sub-config, the head nested under ``head``). What older files wrote differently is read through one table per
class (:data:`LEGACY_DEFAULTS`, the flat format-1 head keys); bad values raise ``ConfigError`` naming the fix.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .head import ABS_TRANSFORMS, AGGREGATIONS, POOLINGS, PROJECTIONS, SUBSPACE_NORMS
from .registry import ConfigError, UnknownNameError, did_you_mean

DEFAULT_PROJECTIONS = ("cosine", "euclidean", "l1", "linf")
MAX_WIDTH = 65536  # a hidden width above this is a typo (e.g. 2560000), not a head


def _fail(where: str, field_name: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{where}.{field_name}: {problem}; {fix}")


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_name(where: str, field_name: str, value: Any, registry) -> str:
    if not isinstance(value, str):
        raise _fail(where, field_name, f"expected a name (string), got {_got(value)}", f"use one of {sorted(registry)}")
    try:
        return registry.check(value)
    except UnknownNameError as error:
        raise UnknownNameError(f"{where}.{field_name}: {error}") from None


def _check_int(where: str, field_name: str, value: Any, low: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        fix = f"write a whole number in [{low}, {MAX_WIDTH}]" + (" or null" if allow_none else "")
        raise _fail(where, field_name, f"expected an integer, got {_got(value)}", fix)
    if not low <= value <= MAX_WIDTH:
        raise _fail(where, field_name, f"{value} is out of range", f"use a value in [{low}, {MAX_WIDTH}]")
    return value


def _check_probability(where: str, field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, field_name, f"expected a number, got {_got(value)}", "write a probability in [0, 1)")
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
        subspace_weights: one weight per projection (then one for the aligned component) at inference; 0 drops it.
        classifier_hidden_size: hidden width of the MLP classifier (0: a single linear layer).
        classifier_dropout: dropout inside the classifier.
        aligned: add the aligned component ``LayerNorm(std(z) @ R + b)`` (``R``/``b``: identity/zero on the training
            encoder, fitted on the anchors on another), after the aggregation: ``r(z) = [aggregation, aligned]``.
        aligned_dim: width of the aligned component (the training encoder's width); ``None``: set from the encoder.
        component_dropout: per-sample probability of dropping each component (each relative subspace and the
            aligned one; one always survives) while training, so the head accepts any non-empty subset.
        combine: ``sum``: one MLP classifier per component, the logits of the kept components averaged; ``concat``:
            one MLP on ``r(z)`` (always, without the aligned component).
        relative_anchors: how many anchors (the first) the relative subspaces read; the others, the *alignment set*,
            only add pairs to the aligned map's attach-time fit. ``None``: all. Needs ``aligned``.
        alignment: the attach-time fit's record (``map``, ``fit``, ``relative_space``, ``stitch_score``, ...); ``None``
            on the training encoder. ``relative_space: translated``: the relative part reads the mapped embeddings.

    The defaults are the default head: one cosine subspace on anchor-standardised embeddings plus the aligned
    component, one classifier each, logits averaged, component dropout 0.3. Configs saved before a field existed read
    it from :data:`LEGACY_DEFAULTS` (``from_dict(..., legacy=True)``)."""

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
            fix = (
                f"write a list, e.g. [{projections!r}]"
                if isinstance(projections, str)
                else f"choose one or more of {sorted(PROJECTIONS)}"
            )
            raise _fail(where, "projections", f"expected a list of names, got {_got(projections)}", fix)
        if not projections:
            raise ConfigError(f"{where}: projections is empty; choose one or more of {sorted(PROJECTIONS)}")
        for i, name in enumerate(projections):
            _check_name(where, f"projections[{i}]", name, PROJECTIONS)
        if len(set(projections)) != len(projections):
            raise _fail(where, "projections", f"has duplicates: {list(projections)}", "list each projection once")
        self.projections = list(projections)
        for name, registry in (
            ("abs_transform", ABS_TRANSFORMS),
            ("subspace_norm", SUBSPACE_NORMS),
            ("aggregation", AGGREGATIONS),
        ):
            _check_name(where, name, getattr(self, name), registry)
        for name, low in (("aggregation_dim", 1), ("aligned_dim", 1), ("relative_anchors", 2)):
            _check_int(where, name, getattr(self, name), low, allow_none=True)
        _check_int(where, "classifier_hidden_size", self.classifier_hidden_size, 0)
        for name in ("subspace_dropout", "classifier_dropout", "component_dropout"):
            setattr(self, name, _check_probability(where, name, getattr(self, name)))
        if not isinstance(self.aligned, bool):
            raise _fail(where, "aligned", f"expected true or false, got {self.aligned!r}", "write true or false")
        if self.combine not in COMBINES:
            problem = f"unknown value {self.combine!r}{did_you_mean(str(self.combine), COMBINES)}"
            raise _fail(where, "combine", problem, f"use one of {list(COMBINES)}")
        if self.relative_anchors is not None and not self.aligned:
            problem = (
                "an alignment set (anchors beyond relative_anchors) only fits the aligned map, and aligned is false"
            )
            raise _fail(where, "relative_anchors", problem, "set aligned: true or drop relative_anchors")
        self.alignment = _check_alignment(where, self.alignment)
        self.subspace_weights = self._checked_weights(where)

    def _checked_weights(self, where: str) -> list[float] | None:
        weights = self.subspace_weights
        if weights is None:
            return None
        fix = "write one weight per projection" + (", then one for the aligned component" if self.aligned else "")
        numbers = isinstance(weights, (list, tuple)) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights
        )
        if not numbers:
            raise _fail(where, "subspace_weights", f"expected a list of numbers, got {weights!r}", fix + ", or null")
        if len(weights) != self.num_components:
            what = f"{len(self.projections)} projections" + (" + the aligned component" if self.aligned else "")
            raise _fail(where, "subspace_weights", f"has {len(weights)} values for {what}", fix)
        if min(weights) < 0 or sum(weights) <= 0 or any(w != w for w in weights):
            raise _fail(
                where, "subspace_weights", f"{list(weights)} is invalid", "use weights >= 0 with a positive sum"
            )
        return [float(w) for w in weights]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> HeadConfig:
        """A validated copy with ``changes`` applied."""
        return HeadConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_method(cls, name: str, **overrides: Any) -> HeadConfig:
        """Exactly the head of a named method (``paper``, ``default`` and the stitch benchmark's rows ``cosine``,
        ``cosine+std``, ``product-mlp_sum``, ...: ``hf_bridges.building.methods.METHODS``), then ``overrides``."""
        try:
            from hf_bridges.building.methods import head_for_method
        except ImportError as error:
            raise ImportError(f"named heads need the hf_bridges package ({error}): pip install hf-bridges") from None
        return head_for_method(name, **overrides)


def _check_alignment(where: str, record: Any) -> dict | None:
    """The attach record: a flat JSON mapping; ``relative_space`` (if given) is ``native`` or ``translated``."""
    if record is None:
        return None
    flat = isinstance(record, Mapping) and all(
        isinstance(key, str) and (value is None or isinstance(value, (str, int, float, bool)))
        for key, value in record.items()
    )
    if not flat:
        problem, fix = f"expected a flat mapping of names to values, got {record!r}", "leave it to the attach"
        raise _fail(where, "alignment", problem, fix + " (null on the training encoder)")
    if record.get("relative_space", "native") not in RELATIVE_SPACES:
        problem = f"unknown value {record.get('relative_space')!r}"
        raise _fail(where, "alignment.relative_space", problem, f"use one of {list(RELATIVE_SPACES)}")
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


# ------------------------------------------------------------------------------------------------ bridge config
# Bump when a saved config or head can no longer be read by older releases.
# 2: the head hyper-parameters are nested under "head" (format 1 wrote them flat; still read).
# 3: the head's aligned component; configs of format 1-2 read absent head keys as LEGACY_DEFAULTS.
BRIDGE_FORMAT_VERSION = 3
MODALITIES = ("text", "image", "features")


@strict(accept_kwargs=True)
class BridgeConfig(PretrainedConfig):
    """Configuration of a relative product ("bridge") model.

    Args:
        encoder: the wrapped encoder's config (a ``PretrainedConfig`` or its dict); ``None`` for a features-only head.
        encoder_name_or_path / encoder_revision: where the encoder came from, recorded so a head knows its origin.
        modality: ``"text"``, ``"image"`` or ``"features"``; heads refuse to attach across modalities.
        pooling: how token states become one vector (``mean``, ``cls``, ``pooler``, ``max``, ...).
        max_seq_length: truncation length of the anchors' (and the inputs') tokenisation.
        anchors: the raw anchor inputs (texts), kept so any encoder can embed them again.
        anchor_labels: optional labels of the anchors (stratified selection, reports).
        num_anchors: k, the width of every relative subspace (default: ``len(anchors)``).
        anchor_seq_length: length of the stored tokenised anchors (set by ``from_encoder``).
        head: the head's hyper-parameters, a :class:`HeadConfig` or its dict. The flat keys of format 1
            (``projections=``, ``aggregation=``, any head field) are folded into it, and ``config.projections``
            etc. read and write ``config.head.projections``.
        head_method: the named head ``head`` was built from (``from_encoder(..., method="paper")``), else ``None``.
        head_source: where an attached head came from (repo id, revision, stitch report), written by the attach.
        freeze_encoder: keep the encoder frozen (no gradients reach it); re-applied after ``from_pretrained``.
        anchor_batch_size: batch size used when embedding the anchors.
        anchor_refresh: ``auto`` re-embeds the anchors whenever the encoder's weights changed (optimizer step,
            LoRA, ``load_state_dict``); ``manual`` only on ``refresh_anchors()``.
        features_dim: width of the absolute embeddings when ``encoder`` cannot tell it (plain-module and
            features-only bridges, a probed width); set from the anchors' embeddings.
        encoder_class: the registered name of a plain module encoder, so a reload rebuilds it.
        anchor_input_shape / anchor_input_dtype: shape (without the batch axis) and dtype of a module bridge's
            stored raw anchor tensors.
        anchor_image_shape: ``[C, H, W]`` of an image bridge's stored (uint8) anchor images.
        output_shape / decoder_hidden_size / decoder_activation: a reconstruction bridge's decoder (``[1, 28,
            28]`` or ``[D]``; hidden width; ``sigmoid`` for 0-1 images or ``none``).
        input_prefix: text prepended to every input of a text bridge and its anchors (e.g. ``"passage: "``).
        normalize_embeddings: L2-normalise every pooled embedding, as a sentence-transformers ``Normalize`` does.
    """

    model_type = "hf_bridges"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True)}

    encoder: Any = None
    encoder_name_or_path: str | None = None
    encoder_revision: str | None = None
    modality: str = "text"
    pooling: str = "mean"
    max_seq_length: int = 128
    anchors: list | tuple | None = None
    anchor_labels: list | tuple | None = None
    num_anchors: int | None = None
    anchor_seq_length: int = 0
    head: Any = None
    head_method: str | None = None
    head_source: dict | None = None
    freeze_encoder: bool = True
    anchor_batch_size: int = 32
    anchor_refresh: str = "auto"
    features_dim: int | None = None
    encoder_class: str | None = None
    anchor_input_shape: list | tuple | None = None
    anchor_input_dtype: str | None = "float32"
    anchor_image_shape: list | tuple | None = None
    output_shape: list | tuple | None = None
    decoder_hidden_size: int = 256
    decoder_activation: str = "sigmoid"
    input_prefix: str | None = ""
    normalize_embeddings: bool = False
    bridge_format_version: int = BRIDGE_FORMAT_VERSION

    def __post_init__(self, **kwargs: Any) -> None:
        if self.bridge_format_version > BRIDGE_FORMAT_VERSION:
            raise ConfigError(
                f"this config was written with bridge format version {self.bridge_format_version}, but the installed "
                f"hf_bridges reads up to version {BRIDGE_FORMAT_VERSION}; upgrade hf_bridges (pip install -U hf_bridges)"
            )
        try:  # every field typed first (the installed package; the remote-code copy goes without)
            from hf_bridges.building.config_fields import check_fields
        except ImportError:
            check_fields = bool  # a no-op: remote code runs the stranger's own files anyway
        check_fields(self)
        flat = {key: kwargs.pop(key) for key in HEAD_FIELDS if key in kwargs}  # format 1 wrote head fields flat
        head = self.head
        head = dict(head or {}) if head is None or isinstance(head, Mapping) else head.to_dict()
        clash = [key for key in flat if key in head and head[key] != flat[key]]
        if clash:
            raise ConfigError(f"BridgeConfig: {clash} given both flat and in head= with different values; pass one")
        flat = {key: list(value) if isinstance(value, tuple) else value for key, value in flat.items()}
        legacy = self.bridge_format_version < 3
        self.head = HeadConfig.from_dict({**head, **flat}, where="BridgeConfig.head", legacy=legacy)
        self.bridge_format_version = BRIDGE_FORMAT_VERSION  # read format 1 or 2, written as the current one
        for name in ("anchors", "anchor_labels", "anchor_input_shape", "anchor_image_shape", "output_shape"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, [int(v) for v in value] if name.endswith("shape") else list(value))
        if self.num_anchors is None:
            self.num_anchors = len(self.anchors) if self.anchors is not None else 0
        if self.anchors is not None and len(self.anchors) != self.num_anchors:
            raise ConfigError(f"num_anchors={self.num_anchors} but {len(self.anchors)} anchor inputs were given")
        self.features_dim = int(self.features_dim) if self.features_dim else None
        self.anchor_input_dtype = self.anchor_input_dtype or "float32"
        self.input_prefix = self.input_prefix or ""
        super().__post_init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Validate the choices; raises ``ConfigError`` (a ``ValueError``) naming the bad value and the valid ones."""
        self.head.validate("BridgeConfig.head")
        POOLINGS.check(self.pooling)
        for name, value, valid in (
            ("modality", self.modality, MODALITIES),
            ("anchor_refresh", self.anchor_refresh, ("auto", "manual")),
            ("decoder_activation", self.decoder_activation, ("none", "sigmoid")),
        ):
            if value not in valid:
                raise ConfigError(f"unknown {name} {value!r}; valid: {sorted(valid)}")
        if isinstance(self.decoder_hidden_size, bool) or not 1 <= self.decoder_hidden_size <= MAX_WIDTH:
            raise ConfigError(
                f"decoder_hidden_size must be an integer in [1, {MAX_WIDTH}], got {self.decoder_hidden_size!r}"
            )
        if self.num_anchors == 1:
            raise ConfigError("a relative space needs at least 2 anchors; got 1")
        relative = self.head.relative_anchors
        if relative is not None and self.num_anchors and relative > self.num_anchors:
            raise ConfigError(
                f"head.relative_anchors={relative} but the bridge holds {self.num_anchors} anchors: the relative "
                "anchors come first, the alignment set after them; lower relative_anchors or pass more anchors"
            )

    @property
    def hidden_size(self) -> int:
        """Width of the absolute embeddings the anchors live in."""
        if self.encoder is None or self.features_dim:  # probed width wins (e.g. MobileNetV2)
            return self.features_dim or 0
        for attr in ("hidden_size", "d_model", "embed_dim"):
            if hasattr(self.encoder, attr):
                return getattr(self.encoder, attr)
        sizes = getattr(self.encoder, "hidden_sizes", None)
        if sizes:
            return sizes[-1]
        raise ConfigError(f"cannot tell the embedding width of encoder config {type(self.encoder).__name__}")

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["head"] = self.head.to_dict()
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        # The head is always written in full: a default that changes in a later release must not change a saved head.
        output = super().to_diff_dict()
        output["head"] = self.head.to_dict()
        output["bridge_format_version"] = self.bridge_format_version
        return output


def _head_alias(name: str) -> property:
    """``config.<name>`` reads and writes ``config.head.<name>`` (the flat spelling of format 1 keeps working)."""
    return property(
        lambda self: getattr(self.head, name),
        lambda self, value: setattr(self, "head", self.head.replace(**{name: value})),
        doc=f"Alias of ``head.{name}``.",
    )


HEAD_FIELDS = HeadConfig.field_names()
for _name in HEAD_FIELDS:
    setattr(BridgeConfig, _name, _head_alias(_name))
del _name
