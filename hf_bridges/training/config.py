"""``TrainConfig``: one training run as data (YAML presets in ``configs/``, ``key=value`` overrides on the command line).

Unknown keys are errors that name the closest valid key, so a typo never silently trains with a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from ..modeling.errors import ConfigError, did_you_mean

# Keys that may change between a run and its resume: they do not change what is trained, only where/how it is logged.
# cache_features only changes where a frozen encoder's features come from (same batches, same head updates).
RUN_KEYS = frozenset(
    {"cache_features", "output_dir", "checkpoint_every", "keep_checkpoints", "log_with", "log_every", "progress_bar"}
)
LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "bias")


@dataclass
class TrainConfig:
    """A training run. ``batch_size`` is the GLOBAL batch (split over processes), so a 1- and an N-process run
    with the same config see the same batches."""

    # --- model: a pretrained encoder (Hub id or folder), or a random one built from `encoder_config` (tiny/CI runs)
    encoder: Optional[str] = None
    encoder_config: Optional[dict] = None  # e.g. {model_type: bert, hidden_size: 32, ...}; vocab_size comes from the tokenizer
    tokenizer: Optional[str] = None  # default: the encoder's; with encoder_config and no tokenizer, one is built from the data
    tokenizer_vocab_size: int = 2000  # size of the word-level vocabulary built from the training texts
    pooling: str = "mean"
    max_seq_length: int = 128
    num_anchors: int = 256
    anchor_seed: int = 0
    projections: list = field(default_factory=lambda: ["cosine", "euclidean", "l1", "linf"])
    aggregation: str = "mlp_sum"
    abs_transform: str = "none"
    subspace_norm: str = "layernorm"
    subspace_dropout: float = 0.0
    classifier_hidden_size: int = 256
    classifier_dropout: float = 0.1
    freeze_encoder: bool = True
    anchor_refresh: str = "auto"  # auto: re-embed anchors after every encoder update; manual: once per epoch
    lora: Optional[dict] = None  # {r, alpha, dropout, target_modules, bias}: LoRA on the encoder, head fully trained
    # auto: a frozen encoder (no LoRA) runs once per split and the head trains on the cached features;
    # true: the same, refused unless frozen without LoRA; false: the encoder runs every batch
    cache_features: str = "auto"
    # --- data (hf_bridges.data registry)
    dataset: str = "bbc_news"
    dataset_kwargs: dict = field(default_factory=dict)
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    # --- optimisation
    seed: int = 0
    num_epochs: int = 3
    max_steps: Optional[int] = None  # optimizer steps; stops early when reached
    batch_size: int = 32  # global batch per micro-step, split over processes
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    encoder_learning_rate: Optional[float] = None  # LoRA / unfrozen encoder parameters; default: learning_rate
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: Optional[float] = 1.0
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
        self.check()

    def check(self) -> None:
        if (self.encoder is None) == (self.encoder_config is None):
            raise ValueError("set exactly one of `encoder` (a Hub id or folder) and `encoder_config` (a random encoder)")
        if self.encoder_config is not None and "model_type" not in self.encoder_config:
            raise ValueError("encoder_config needs a model_type (e.g. bert)")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be one of no, bf16, fp16; got {self.mixed_precision!r}")
        for key in ("batch_size", "gradient_accumulation_steps", "num_epochs", "num_anchors"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if str(self.cache_features).lower() not in ("auto", "true", "false"):
            raise ValueError(f"cache_features must be auto, true or false; got {self.cache_features!r}")
        if str(self.cache_features).lower() == "true" and (self.lora is not None or not self.freeze_encoder):
            why = "LoRA adapts the encoder" if self.lora is not None else "freeze_encoder is false"
            raise ValueError(
                f"cache_features=true needs a frozen encoder, but {why}: its features change every step. "
                "Use cache_features=auto (or false) for this run, or freeze_encoder=true without lora"
            )
        if self.lora is not None:
            unknown = set(self.lora) - set(LORA_KEYS)
            if unknown:
                raise ValueError(f"unknown lora key(s) {sorted(unknown)}; valid: {list(LORA_KEYS)}")
            if not self.lora.get("target_modules"):
                raise ValueError("lora needs target_modules, e.g. [query, value]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that shapes the trained model (not where it is written or logged)."""
        identity = {k: v for k, v in self.to_dict().items() if k not in RUN_KEYS}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Human-readable ``key: theirs -> ours`` for the model-shaping keys that differ from ``other``."""
        ours = self.to_dict()
        keys = sorted((set(ours) | set(other)) - RUN_KEYS)
        return [f"{k}: {other.get(k)!r} -> {ours.get(k)!r}" for k in keys if ours.get(k) != other.get(k)]


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ConfigError:
    return ConfigError(f"unknown {where} key {key!r}{did_you_mean(key, valid)} (valid keys: {', '.join(sorted(valid))})")


def _field_type(name: str) -> Any:
    hint = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is Union and len(args) == 1 else hint


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


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML preset (optional) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise OSError(f"no config file at {path}; presets live in configs/ (e.g. configs/train-tiny.yaml)")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
        for key in data:
            if key not in FIELDS:
                raise _unknown_key(key, FIELDS, f"config ({path.name})")
        data = {k: coerce(k, v) if _field_type(k) in (int, float, bool) else v for k, v in data.items()}
    return TrainConfig(**apply_overrides(data, overrides))
