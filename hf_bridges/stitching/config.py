"""The stitching run as data: a YAML file parsed into dataclasses, with every mistake reported before heavy work.

Unknown keys and unknown registry names get a "did you mean" hint; checks that need the world (encoder in the
cache, label column present, enough anchors, output folder writable) live in :mod:`.validate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ..building.methods import method_head
from ..modeling.configuration_bridge import HeadConfig
from ..modeling.registry import ConfigError, did_you_mean
from ..renames import reads_old_keys
from .encoder_kinds import BACKENDS, ENCODER_KINDS, EncoderSpec, check_backend, load_plugins


def check_choice(where: str, value: str, choices: Iterable[str]) -> None:
    choices = sorted(choices)
    if value not in choices:
        raise ConfigError(f"{where}: unknown value {value!r}{did_you_mean(value, choices)} (valid: {choices})")


def _build(cls, data: Any, where: str):
    """Dataclass from a mapping, refusing unknown keys (with a hint) and wrong container types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    old = set(getattr(cls, "RENAMES", {}))
    for key in data:
        if key in old:
            continue  # renamed: the class warns and reads it
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, names)} (valid keys: {sorted(names)})")
    data = _check_scalars(cls, data, where)
    try:
        return cls(**data)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


SCALARS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def _check_scalars(cls, data: dict, where: str) -> dict:
    """Scalar fields hold their declared type (``num_anchors: many`` is refused here, not deep in the run); a
    number YAML reads as a string (``1e-3``: YAML 1.1 wants ``1.0e-3``) is read as the number."""
    import types
    import typing

    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        hint = hints.get(key)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1
        kind = args[0] if optional else hint
        if kind not in SCALARS or (value is None and optional):
            continue
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    number = float("nan")
                ok = number == number and abs(number) != float("inf")
                data = {**data, key: number} if ok else data
        if not ok:
            field = f"{where}.{key}" if ": " in where else f"{where}: {key}"  # "config.yaml: anchors.num_anchors"
            raise ConfigError(
                f"{field} must be {SCALARS[kind]}{' or null' if optional else ''}, got {value!r} "
                f"({type(value).__name__})"
            )
    return data


@dataclass
class DatasetSpec:
    name: str = "bbc_news"  # hf_bridges.data registry name
    options: dict = field(default_factory=dict)  # passed to the loader (test_size, seed, data_files...)
    text_column: str = "text"
    label_column: str = "label"
    max_train: int | None = None  # stratified subsets, for quick runs and tests
    max_test: int | None = None


@reads_old_keys("anchors")
@dataclass
class AnchorSpec:
    RENAMES: ClassVar[dict[str, str]] = {"num": "num_anchors"}
    num_anchors: int = 500  # was num (still read, with a FutureWarning)
    strategy: str = "stratified"
    seed: int = 0
    encoder: str | None = None  # the space kmeans / farthest_point work in (an encoder name); default: first
    # an alignment set: this many more train inputs (random, no labels) paired between encoders only to fit the map
    # of the methods that have one (translation, default); the relative subspaces keep the num_anchors anchors
    alignment: int = 0


class HeadSpec(dict):
    """The head settings every method shares, as :class:`HeadConfig` fields by name (HeadConfig is the one list of
    them; a field not given is HeadConfig's default). The method sets projections, aggregation, abs_transform and
    subspace_dropout. Reading a field (``spec.subspace_norm``) gives the resolved value."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(HeadConfig.from_dict(dict(self), where="head"), name)


@reads_old_keys("training")
@dataclass
class TrainingSpec:
    RENAMES: ClassVar[dict[str, str]] = {"epochs": "num_epochs"}
    num_epochs: int = 40  # was epochs (still read, with a FutureWarning)
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class SelectSpec:
    """Label-free attach-time choice of subspaces from the anchors alone (compatibility.select_subspaces)."""

    mode: str = "hard"  # hard | soft
    tolerance: float = 0.02


@dataclass
class MethodSpec:
    name: str
    kind: str = "relative"  # relative | absolute | translation | default
    projections: list = field(default_factory=lambda: ["cosine"])
    aggregation: str = "concat"
    abs_transform: str = "none"
    subspace_dropout: float = 0.0
    select: SelectSpec | None = None

    def head_config(self, head: HeadSpec, where: str = "method") -> HeadConfig:
        """The method's head as a validated :class:`HeadConfig` (shared settings from ``head``): the same
        definition as ``HeadConfig.from_method`` / ``from_encoder(method=...)`` (``head_config.method_head``)."""
        kind = "default" if self.kind == "default" else "relative"  # default: HeadConfig() + the shared settings
        fields = (self.projections, self.aggregation, self.abs_transform, self.subspace_dropout)
        return method_head(kind, *fields, where=where, **head)


@dataclass
class BestHeadSpec:
    """After the run, rebuild the best relative head on its training encoder, write it as a head folder
    (``<output-dir>/best-head/``, card with the run's results) and push it when ``repo_id`` is set."""

    method: str = "best"  # best (any relative method) | best-product (>= 2 projections) | a method name
    repo_id: str | None = None  # Hub repo to push to (token: the stored login / HF_TOKEN); None: folder only
    private: bool = False
    weights_dtype: str = "float32"  # float16 halves the file


@dataclass
class LatentSpec:
    k: int = 10
    max_samples: int = 500
    precision: str = "float32"  # the dtype of the latent scores' n x n x d products (metrics/latent.py)


@dataclass
class StitchConfig:
    encoders: list
    methods: list
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    head: HeadSpec = field(default_factory=HeadSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    latent: LatentSpec = field(default_factory=LatentSpec)
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    name: str = "stitch"
    cache_dir: str | None = None  # embedding cache root (default: <HF_HOME>/hf_bridges/embeddings)
    best_head: BestHeadSpec | None = None  # off by default; see BestHeadSpec

    def encoder(self, name: str) -> EncoderSpec:
        for spec in self.encoders:
            if spec.name == name:
                return spec
        raise ConfigError(f"no encoder named {name!r}{did_you_mean(name, [e.name for e in self.encoders])}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# relative: a RelativeProductHead (no aligned component); absolute: the MLP on absolute embeddings; translation: that
# absolute head attached through an orthogonal map fitted on the anchors (and the alignment set); default: the head
# from_encoder builds (HeadConfig() itself, with the shared head settings of `head:`), attached by
# compatibility.align_head.
METHOD_KINDS = ("relative", "absolute", "translation", "default")
MAPPED_KINDS = ("translation", "default")  # the methods whose attach fits a map (they get the alignment set)


def parse_config(data: dict, source: str = "config") -> StitchConfig:
    """Parse and check everything that needs no files, models or data."""
    from ..data.anchors import ANCHOR_STRATEGIES
    from ..modeling.head import POOLINGS

    load_plugins()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    top = {f.name for f in dataclasses.fields(StitchConfig)}
    for key in data:
        if key not in top:
            raise ConfigError(f"{source}: unknown key {key!r}{did_you_mean(key, top)} (valid keys: {sorted(top)})")
    for key in ("encoders", "methods"):
        if not data.get(key):
            raise ConfigError(f"{source}: '{key}' is required and must be a non-empty list")
    raw = dict(data)
    encoders = [_build(EncoderSpec, e, f"{source}: encoders[{i}]") for i, e in enumerate(raw.pop("encoders"))]
    methods = []
    for i, m in enumerate(raw.pop("methods")):
        where = f"{source}: methods[{i}]"
        if isinstance(m, dict) and isinstance(m.get("select"), dict):
            m = {**m, "select": _build(SelectSpec, m["select"], f"{where}.select")}
        elif isinstance(m, dict) and m.get("select") is True:
            m = {**m, "select": SelectSpec()}
        methods.append(_build(MethodSpec, m, where))
    if raw.get("best_head") is True:
        raw["best_head"] = {}
    elif raw.get("best_head") is False:
        raw["best_head"] = None
    nested = {
        "best_head": BestHeadSpec,
        "dataset": DatasetSpec,
        "anchors": AnchorSpec,
        "training": TrainingSpec,
        "latent": LatentSpec,
    }
    for key, cls in nested.items():
        if key in raw and not (key == "best_head" and raw[key] is None):
            raw[key] = _build(cls, raw[key], f"{source}: {key}")
    head = raw.get("head") or {}
    if not isinstance(head, dict):
        raise ConfigError(f"{source}: head: expected a mapping of HeadConfig fields, got {type(head).__name__}")
    HeadConfig.from_dict(head, where=f"{source}: head")  # unknown fields, types, ranges
    raw["head"] = HeadSpec(head)
    config = _build(StitchConfig, {**raw, "encoders": encoders, "methods": methods}, source)
    names = [e.name for e in encoders]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: encoder names must be unique, got {names}; set 'name' on each encoder")
    for i, enc in enumerate(encoders):
        check_choice(f"{source}: encoders[{i}].kind", enc.kind, ENCODER_KINDS)
        check_choice(f"{source}: encoders[{i}].backend", enc.backend, BACKENDS)
        check_backend(enc)  # onnx serves kind: hf_text only
        if enc.pooling is not None:
            check_choice(f"{source}: encoders[{i}].pooling", enc.pooling, POOLINGS)
        if (enc.max_seq_length is not None and enc.max_seq_length < 1) or enc.batch_size < 1:
            raise ConfigError(f"{source}: encoders[{i}]: max_seq_length and batch_size must be >= 1")
    method_names = [m.name for m in methods]
    if len(set(method_names)) != len(method_names):
        raise ConfigError(f"{source}: method names must be unique, got {method_names}")
    for i, m in enumerate(methods):
        where = f"{source}: methods[{i}] ({m.name})"
        check_choice(f"{where}.kind", m.kind, METHOD_KINDS)
        if m.kind in ("absolute", "translation"):
            continue
        m.head_config(config.head, where)  # types, ranges and registry names, as every head checks them
        if m.select is not None:
            check_choice(f"{where}.select.mode", m.select.mode, ("hard", "soft"))
    check_choice(f"{source}: anchors.strategy", config.anchors.strategy, ANCHOR_STRATEGIES)
    check_choice(f"{source}: latent.precision", config.latent.precision, ("float32", "float64"))
    if config.anchors.encoder is not None and config.anchors.encoder not in names:
        raise ConfigError(
            f"{source}: anchors.encoder {config.anchors.encoder!r} is not an encoder name"
            f"{did_you_mean(config.anchors.encoder, names)} (names: {names})"
        )
    check_numbers(config, source)
    if config.best_head is not None:
        check_best_head(config, source)
    return config


# the smallest value each count takes (the quick-run flag that sets it); checked after the flags too, so a run never
# reaches sklearn's "train_size=-1 should be ..." or numpy's "Seed must be between ..." (or a NaN Jaccard@0)
MINIMA = {
    "training.num_epochs": (1, "--epochs"),
    "training.batch_size": (1, None),
    "dataset.max_train": (1, "--max-train"),
    "dataset.max_test": (1, "--max-test"),
    "anchors.num_anchors": (2, "--anchors"),
    "anchors.alignment": (0, "--alignment"),
    "latent.k": (1, None),
    "latent.max_samples": (2, None),
}


def check_numbers(config: StitchConfig, source: str = "config") -> None:
    """Every count in range (``dataset.max_*`` may be null: all rows) and every seed one numpy takes."""
    for key, (least, flag) in MINIMA.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is None and section == "dataset":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            how = f"a whole number; flag {flag}" if flag else "a whole number"
            raise ConfigError(f"{source}: {key} must be >= {least} ({how}), got {value!r}")
    training = config.training  # torch's "Invalid learning rate: -1" came after every embedding was computed
    if not training.learning_rate > 0 or not training.weight_decay >= 0:
        raise ConfigError(
            f"{source}: training.learning_rate must be > 0 and training.weight_decay >= 0, got "
            f"{training.learning_rate} and {training.weight_decay}"
        )
    seeds = config.seeds
    if not isinstance(seeds, list) or not seeds or not all(_is_seed(s) for s in seeds):
        raise ConfigError(
            f"{source}: seeds (--seeds) must be a non-empty list of whole numbers from 0 to 2**32 - 1, got {seeds!r}"
        )


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def check_best_head(config: StitchConfig, source: str = "config") -> None:
    """The best head is rebuilt with ``BridgeForSequenceClassification.from_encoder``: text encoders only, no
    prefix (the bridge cannot prepend one), and at least one relative method to choose from."""
    from ..heads.format import WEIGHT_DTYPES
    from ..heads.hub import REPO_ID

    spec, where = config.best_head, f"{source}: best_head"
    relative = [m for m in config.methods if m.kind == "relative"]
    special = {"best": relative, "best-product": [m for m in relative if len(m.projections) > 1]}
    if spec.method in special:
        if not special[spec.method]:
            raise ConfigError(
                f"{where}.method = {spec.method!r} but the config has no "
                f"{'product ' if spec.method == 'best-product' else ''}relative method to choose from; "
                "add one, or remove best_head"
            )
    else:
        check_choice(f"{where}.method", spec.method, [*special, *(m.name for m in relative)])
    check_choice(f"{where}.weights_dtype", spec.weights_dtype, WEIGHT_DTYPES)
    if spec.repo_id is not None and (not isinstance(spec.repo_id, str) or not REPO_ID.match(spec.repo_id)):
        raise ConfigError(f"{where}.repo_id: {spec.repo_id!r} is not a Hub repo id; use 'owner/name'")
    for i, enc in enumerate(config.encoders):
        if enc.kind != "hf_text" or enc.prefix:
            raise ConfigError(
                f"{where}: encoders[{i}] ({enc.name}) is kind {enc.kind!r} with prefix {enc.prefix!r}; "
                "the best head is rebuilt as a text bridge, which needs hf_text encoders without a "
                "prefix. Remove best_head (or the prefix) for this run"
            )


def load_config(path: str | Path) -> StitchConfig:
    """Read a stitching config: a YAML file, or a shipped preset by name (``stitch-bbc``)."""
    from ..presets import resolve_preset

    path = resolve_preset(path, kind="stitch")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:  # a binary file: the codec's line named no file
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, source=str(path))
