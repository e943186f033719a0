"""``TrainConfig``: one training run as data (YAML presets in ``configs/``, ``key=value`` overrides on the command line).

Unknown keys are errors that name the closest valid key, so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from ..modeling.configuration_bridge import HeadConfig
from ..modeling.registry import ConfigError, did_you_mean
from ..renames import read_keys, reads_old_keys, renamed

HEAD_KEYS = HeadConfig.field_names()


def fold_head_keys(data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Format-1 spelling: head hyper-parameters at the top level move into the ``head:`` mapping (with a warning)."""
    flat = [key for key in data if key in HEAD_KEYS]
    if not flat:
        return data
    data = dict(data)
    head = dict(data.get("head") or {}) if not isinstance(data.get("head"), HeadConfig) else data["head"].to_dict()
    for key in flat:
        renamed(key, f"head.{key}", where)
        if key in head and head[key] != data[key]:
            raise ConfigError(f"{where}: {key!r} given both at the top level and under head:; keep head.{key}")
        head[key] = data.pop(key)
    data["head"] = head
    return data


# Keys that may change between a run and its resume: they do not change what is trained, only where/how it is logged.
# cache_features only changes where a frozen encoder's features come from (same batches, same head updates).
RUN_KEYS = frozenset(
    {"cache_features", "output_dir", "checkpoint_every", "keep_checkpoints", "log_with", "log_every", "progress_bar"}
)
# Keys a resume may change to train longer (or stop sooner): the run's data, model and updates stay those of the
# checkpoint; only the linear schedule is rebuilt over the new total from the step reached, as transformers' Trainer
# does when ``num_train_epochs`` is raised on resume.
LENGTH_KEYS = frozenset({"num_epochs", "max_steps"})
LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "bias")


@reads_old_keys("TrainConfig")
@dataclass
class TrainConfig:
    """A training run. ``batch_size`` is the GLOBAL batch (split over processes), so a 1- and an N-process run
    with the same config see the same batches."""

    RENAMES: ClassVar[dict[str, str]] = {"max_length": "max_seq_length", "epochs": "num_epochs"}
    fold_old_keys = staticmethod(lambda data, where: fold_head_keys(data, where))

    # --- model: a pretrained encoder (Hub id or folder), or a random one built from `encoder_config` (tiny/CI runs)
    encoder: str | None = None
    encoder_config: dict | None = (
        None  # e.g. {model_type: bert, hidden_size: 32, ...}; vocab_size comes from the tokenizer
    )
    tokenizer: str | None = (
        None  # default: the encoder's; with encoder_config and no tokenizer, one is built from the data
    )
    tokenizer_vocab_size: int = 2000  # size of the word-level vocabulary built from the training texts
    pooling: str = "mean"
    max_seq_length: int = 128
    num_anchors: int = 256
    anchor_seed: int = 0
    # an alignment set: this many more training texts (no labels) stored with the head only to fit its aligned map
    # when it is attached to another encoder (docs/method.md: 1,000 closed the BBC gap); 0: none
    alignment_inputs: int = 0
    # the head's hyper-parameters (HeadConfig: projections, aggregation, abs_transform, ...), a `head:` mapping in YAML
    head: HeadConfig = field(default_factory=HeadConfig)
    freeze_encoder: bool = True
    # steps: the loop re-embeds the anchors every anchor_refresh_steps optimizer steps and before every evaluation
    # and save (1.3x a plain step at 8 against 3.6x for auto, same accuracy: docs/performance.md); auto: after every
    # encoder update; manual: once per epoch. All free with a frozen encoder (it never changes).
    anchor_refresh: str = "steps"
    anchor_refresh_steps: int = 8
    lora: dict | None = None  # {r, alpha, dropout, target_modules, bias}: LoRA on the encoder, head fully trained
    # auto: a frozen encoder (no LoRA) runs once per split and the head trains on the cached features;
    # true: the same, refused unless frozen without LoRA; false: the encoder runs every batch
    cache_features: str = "auto"
    # --- data (hf_bridges.data registry)
    dataset: str = "bbc_news"
    dataset_kwargs: dict = field(default_factory=dict)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    # --- optimisation
    seed: int = 0
    num_epochs: int = 3
    max_steps: int | None = None  # optimizer steps; stops early when reached
    batch_size: int = 32  # global batch per micro-step, split over processes
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    encoder_learning_rate: float | None = None  # LoRA / unfrozen encoder parameters; default: learning_rate
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16
    cpu: bool = False  # force CPU (a multi-process CPU group also needs it: see README)
    # --- run
    output_dir: str = "runs/train"
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0: only at the end of each epoch
    keep_checkpoints: int = 2
    log_with: list = field(default_factory=lambda: ["json", "csv"])  # + "tensorboard" when installed
    log_every: int = 10
    progress_bar: bool = True

    def __post_init__(self) -> None:
        self.head = HeadConfig.from_dict(self.head, where="head")
        self.check()

    def check(self) -> None:
        if (self.encoder is None) == (self.encoder_config is None):
            raise ValueError(
                "set exactly one of `encoder` (a Hub id or folder) and `encoder_config` (a random encoder)"
            )
        if self.encoder_config is not None and "model_type" not in self.encoder_config:
            raise ValueError("encoder_config needs a model_type (e.g. bert)")
        if self.encoder_config is not None:
            check_encoder_config(self.encoder_config)
        # 0 for max_seq_length fell back to from_encoder's 128 (clamped to 8 positions); a negative checkpoint_every
        # checkpointed every step; a vocabulary of 0 kept the special tokens and one word; numpy refused seed -1
        for key, least, limit in (
            ("seed", 0, 2**32 - 1),
            ("anchor_seed", 0, 2**32 - 1),
            ("max_seq_length", 1, None),
            ("checkpoint_every", 0, None),
            ("tokenizer_vocab_size", 6, None),  # the 5 special tokens and at least one word
        ):
            value = getattr(self, key)
            if value < least or (limit is not None and value > limit):
                bound = f"from {least} to {limit}" if limit is not None else f">= {least}"
                raise ConfigError(f"{key} must be {bound}, got {value}")
        for key in ("max_train_samples", "max_eval_samples", "max_steps"):  # 0 / -1 failed deep in datasets
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key} must be >= 1 (or null: no limit), got {value}")
        for key, least in (("learning_rate", 0.0), ("encoder_learning_rate", 0.0), ("max_grad_norm", 0.0)):
            value = getattr(self, key)  # AdamW checks only its default lr: param groups took -1 (gradient ascent)
            if value is not None and not value > least:
                raise ConfigError(f"{key} must be > 0, got {value}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(
                f"warmup_ratio is the fraction of the steps spent warming up, 0 to 1; got {self.warmup_ratio}"
            )
        if self.anchor_refresh not in ("steps", "auto", "manual"):
            raise ConfigError(f"anchor_refresh must be steps, auto or manual, got {self.anchor_refresh!r}")
        if self.anchor_refresh_steps < 1:
            raise ConfigError(f"anchor_refresh_steps must be >= 1, got {self.anchor_refresh_steps}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be one of no, bf16, fp16; got {self.mixed_precision!r}")
        for key in ("batch_size", "gradient_accumulation_steps", "num_epochs", "num_anchors"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if (
            isinstance(self.alignment_inputs, bool)
            or not isinstance(self.alignment_inputs, int)
            or self.alignment_inputs < 0
        ):
            raise ConfigError(f"alignment_inputs must be a whole number >= 0 (0: none), got {self.alignment_inputs!r}")
        if self.alignment_inputs and not self.head.aligned:
            raise ConfigError("alignment_inputs only fit the aligned map, and head.aligned is false: drop one of them")
        if str(self.cache_features).lower() not in ("auto", "true", "false"):
            raise ValueError(f"cache_features must be auto, true or false; got {self.cache_features!r}")
        if str(self.cache_features).lower() == "true" and (self.lora is not None or not self.freeze_encoder):
            why = "LoRA adapts the encoder" if self.lora is not None else "freeze_encoder is false"
            raise ValueError(
                f"cache_features=true needs a frozen encoder, but {why}: its features change every step. "
                "Use cache_features=auto (or false) for this run, or freeze_encoder=true without lora"
            )
        check_trackers(self.log_with)
        if self.lora is not None:
            unknown = set(self.lora) - set(LORA_KEYS)
            if unknown:
                raise ValueError(f"unknown lora key(s) {sorted(unknown)}; valid: {list(LORA_KEYS)}")
            if not self.lora.get("target_modules"):
                raise ValueError("lora needs target_modules, e.g. [query, value]")
            check_lora(self.lora)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _identity(self) -> dict[str, Any]:
        """The model-shaping keys, with the head flattened as format 1 wrote it (so old runs still resume); the
        head keys format 1 did not have count only when they differ from their default."""
        identity = {k: v for k, v in self.to_dict().items() if k not in RUN_KEYS and k != "head"}
        return {**identity, **_flat_head(self.head.to_dict())}

    def fingerprint(self) -> str:
        """A hash of everything that shapes the trained model (not where it is written or logged)."""
        identity = self._identity()
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def changes(self, other: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``key -> (theirs, ours)`` for the model-shaping keys that differ from the saved config ``other``."""
        ours = self._identity()
        other = dict(other)
        if isinstance(other.get("head"), dict):  # a config saved by this release: compare it flattened as well
            other.update(_flat_head(other.pop("head")))
        keys = sorted((set(ours) | set(other)) - RUN_KEYS)
        return {k: (other.get(k), ours.get(k)) for k in keys if ours.get(k) != other.get(k)}

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Human-readable ``key: theirs -> ours`` for the model-shaping keys that differ from ``other``."""
        return [f"{k}: {theirs!r} -> {ours!r}" for k, (theirs, ours) in self.changes(other).items()]


def check_encoder_config(values: dict[str, Any]) -> None:
    """A random encoder's config, checked before any data is read: a key its config class does not have (a typo
    such as ``hiden_size`` was kept as an extra attribute and the run trained with the default) or a value of the
    wrong type (transformers' strict dataclass traceback) is one :class:`ConfigError`."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import CONFIG_MAPPING, AutoConfig

    model_type = values["model_type"]
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"encoder_config.model_type: unknown model type {model_type!r}{did_you_mean(model_type, CONFIG_MAPPING)}"
        )
    cls = CONFIG_MAPPING[model_type]
    try:
        known = set(cls().to_dict()) | set(getattr(cls, "attribute_map", {}))
    except Exception:  # a config class that cannot be built without arguments: transformers checks the values
        known = set(values)
    if dataclasses.is_dataclass(cls):
        known |= {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"encoder_config: {cls.__name__} has no key {key!r}{did_you_mean(key, known)}; "
                "fix or drop it (it would be ignored)"
            )
    try:
        AutoConfig.for_model(**values)
    except (StrictDataclassError, TypeError, ValueError) as error:
        raise ConfigError(f"encoder_config: {' '.join(str(error).split())}") from None


def check_trackers(names: Sequence[str]) -> None:
    """Every ``log_with`` name is one of our file trackers or an Accelerate tracker installed here: a run asked to
    log to wandb or TensorBoard that silently logs nowhere loses what the user asked for (found after the run)."""
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    from .trackers import FILE_TRACKERS

    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"log_with must be a list of tracker names, e.g. [json, csv]; got {names!r}")
    valid = [*FILE_TRACKERS, *(t for t in LoggerType.list() if t != "all")]
    installed = {str(t) for t in get_available_trackers()}
    for name in names:
        if name not in valid:
            raise ConfigError(f"log_with: unknown tracker {name!r}{did_you_mean(str(name), valid)}; valid: {valid}")
        if name not in FILE_TRACKERS and name not in installed:
            raise ConfigError(
                f"log_with names {name!r}, which is not installed here: pip install {name.replace('_', '-')}, "
                f"or drop it from log_with (json and csv need nothing)"
            )


def check_lora(lora: dict[str, Any]) -> None:
    """Each LoRA value typed (``lora.r=abc`` was peft's ``TypeError`` traceback after the data was loaded)."""
    checks = {
        "r": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1"),
        "alpha": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0"),
        "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1, "0 to < 1"),
        "bias": (lambda v: v in ("none", "all", "lora_only"), "none, all or lora_only"),
        "target_modules": (
            lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, str) for t in v)),
            "a layer name or a list of them",
        ),
    }
    for key, value in lora.items():
        ok, what = checks[key]
        if not ok(value):
            raise ConfigError(f"lora.{key} must be {what}, got {value!r}")


FORMAT1_HEAD_KEYS = (
    "projections",
    "aggregation",
    "abs_transform",
    "subspace_norm",
    "subspace_dropout",
    "classifier_hidden_size",
    "classifier_dropout",
)


def _flat_head(head: dict[str, Any]) -> dict[str, Any]:
    default = HeadConfig().to_dict()
    return {k: v for k, v in head.items() if k in FORMAT1_HEAD_KEYS or v != default.get(k)}


for _key in HEAD_KEYS:  # cfg.projections reads and writes cfg.head.projections
    setattr(
        TrainConfig,
        _key,
        property(
            lambda self, k=_key: getattr(self.head, k),
            lambda self, value, k=_key: setattr(self, "head", self.head.replace(**{k: value})),
        ),
    )
del _key

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ConfigError:
    return ConfigError(
        f"unknown {where} key {key!r}{did_you_mean(key, valid)} (valid keys: {', '.join(sorted(valid))})"
    )


def _field_type(name: str) -> Any:
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (Union, types.UnionType) and len(args) == 1 else hint


def coerce(name: str, value: Any) -> Any:
    """Coerce a YAML-parsed override value to the field's type (``1`` -> ``1.0`` for floats, ``a,b`` -> list)."""
    kind = _field_type(name)
    if value is None:
        return None
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if kind is float:
            return float(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is str:
            return str(value)
        if kind is list:
            return list(value) if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v]
        if kind is dict and not isinstance(value, dict):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: expected {getattr(kind, '__name__', kind)}") from None
    return value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` (or ``dictkey.sub=value``) strings; values are parsed as YAML, then coerced."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. output_dir=runs/x or lora.r=8)")
        key, raw = item.split("=", 1)
        key = key.strip()
        value = yaml.safe_load(raw) if raw.strip() else None
        top, _, sub = key.partition(".")
        if top in TrainConfig.RENAMES:
            renamed(top, TrainConfig.RENAMES[top], "override")
            top = TrainConfig.RENAMES[top]
        elif top in HEAD_KEYS and not sub:
            renamed(top, f"head.{top}", "override")
            top, sub = "head", top
        if top == "head":
            if not sub:
                raise ValueError("head is a mapping; write head.KEY=VALUE (e.g. head.aggregation=sum)")
            if sub not in HEAD_KEYS:
                raise _unknown_key(sub, HEAD_KEYS, "head")
            if sub == "projections" and isinstance(value, str):
                value = [v for v in value.split(",") if v]
            head = data.get("head")
            nested = head.to_dict() if isinstance(head, HeadConfig) else dict(head or {})
            nested[sub] = value
            data["head"] = nested
            continue
        if top not in FIELDS:
            raise _unknown_key(top, FIELDS, "config")
        if sub:
            if _field_type(top) is not dict:
                raise ValueError(f"{top} is not a mapping; write {top}=VALUE")
            if top == "lora" and sub not in LORA_KEYS:
                raise _unknown_key(sub, LORA_KEYS, "lora")
            nested = dict(data.get(top) or {})
            nested[sub] = value
            data[top] = nested
        else:
            # strings stay verbatim ("001" is a folder name, not the number 1); `null` still means None
            data[top] = raw.strip() if _field_type(top) is str and value is not None else coerce(top, value)
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML file or a shipped preset by name (``train-tiny``), optional, and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        from ..presets import resolve_preset

        path = resolve_preset(path, kind="train")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:  # as the stitch config: one line naming the file
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a mapping of config keys, got {type(data).__name__}")
        data = read_keys(TrainConfig, data, f"config ({path.name})")
        for key in data:
            if key not in FIELDS:
                raise _unknown_key(key, FIELDS, f"config ({path.name})")
        data = {k: coerce(k, v) if _field_type(k) in (int, float, bool) else v for k, v in data.items()}
    return TrainConfig(**apply_overrides(data, overrides))
