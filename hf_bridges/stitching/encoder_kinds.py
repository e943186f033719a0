"""Encoder kinds: how a spec in the config becomes embeddings. A registry, so image or plain-module encoders plug in.

A kind provides ``identity(spec)`` (what the embedding cache is keyed by, incl. the resolved revision; raises
ConfigError when the encoder is unavailable, before any heavy work) and ``load(spec)`` returning a function
``embed(batch: dict[str, list]) -> np.ndarray`` (n, dim) float32 over dataset rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar, Protocol, TypeVar

import numpy as np

from ..modeling.registry import ConfigError, Registry, did_you_mean
from ..renames import reads_old_keys
from ..snapshots import resolve_hf_revision


@reads_old_keys("encoders[]")
@dataclass
class EncoderSpec:
    RENAMES: ClassVar[dict[str, str]] = {"max_length": "max_seq_length"}
    id: str
    name: str | None = None  # short label in tables (default: the part after the last '/')
    kind: str = "hf_text"  # resolved through stitching.encoders.ENCODER_KINDS
    revision: str = "main"
    # None: what a sentence-transformers model says (its pooling, max_seq_length, default prompt, Normalize
    # module), else mean / 128 / "" / off. A value set in the config always wins.
    pooling: str | None = None
    max_seq_length: int | None = None  # was max_length (still read, with a FutureWarning)
    prefix: str | None = None  # prepended to every input text, e.g. e5's "passage: " (or an ST prompt name)
    normalize: bool | None = None  # L2-normalise the pooled embeddings
    batch_size: int = 32
    # hf_text: what runs the transformer forward; onnx: onnxruntime (options onnx_threads, default 1, and onnx_file,
    # default onnx/model.onnx if the repo ships it, else a cached torch.onnx.export; "export": always export)
    backend: str = "torch"
    options: dict = field(default_factory=dict)  # free-form, for other encoder kinds

    def __post_init__(self):
        self.name = self.name or self.id.rstrip("/").split("/")[-1]


EmbedFn = Callable[[dict], np.ndarray]


class EncoderKind(Protocol):
    input_column: str

    def identity(self, spec: EncoderSpec) -> dict: ...

    def load(self, spec: EncoderSpec) -> EmbedFn: ...


ENCODER_KINDS: Registry[EncoderKind] = Registry("encoder kind")
PLUGIN_PREFIX = "encoder_kinds_"


def load_plugins() -> None:
    """Import every ``hf_bridges/stitching/encoder_kinds_*.py`` module, so the encoder kinds registered there
    (e.g. image encoders) are available to configs by name."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith(PLUGIN_PREFIX):
            importlib.import_module(f"{__package__}.{info.name}")


T = TypeVar("T", bound=type)


def register_encoder_kind(name: str) -> Callable[[T], T]:
    """Class decorator: instances of the class serve every encoder spec with ``kind: <name>``."""

    def wrap(cls: T) -> T:
        ENCODER_KINDS.register(name, cls())
        return cls

    return wrap


def get_encoder_kind(name: str) -> EncoderKind:
    if name not in ENCODER_KINDS:
        load_plugins()
    return ENCODER_KINDS.get(name)


def model_config(model_id: str, revision: str = "main") -> dict | None:
    """The ``config.json`` of a local folder or of a cached Hub snapshot; None when it is not available locally."""
    if os.path.isdir(model_id):
        path = Path(model_id) / "config.json"
        found = str(path) if path.is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json", revision=revision)
    if not isinstance(found, str):
        return None
    try:
        return json.loads(Path(found).read_text())
    except (OSError, ValueError):
        return None


def is_model2vec(config: dict | None) -> bool:
    """A model2vec static model's config.json (``kind: model2vec``), which transformers' AutoModel cannot load."""
    return bool(config) and (
        config.get("model_type") == "model2vec" or "StaticModel" in config.get("architectures", [])
    )


BACKENDS = ("torch", "onnx")


def check_backend(spec: EncoderSpec) -> str:
    """The spec's backend, or ConfigError naming the valid ones (onnx serves only ``kind: hf_text``; its
    ``options.onnx_threads`` is a positive integer)."""
    if spec.backend not in BACKENDS:
        raise ConfigError(
            f"encoder {spec.id!r}: unknown backend {spec.backend!r}{did_you_mean(spec.backend, BACKENDS)} "
            f"(valid: {list(BACKENDS)})"
        )
    if spec.backend != "torch" and spec.kind != "hf_text":
        raise ConfigError(f"encoder {spec.id!r}: backend {spec.backend!r} serves kind: hf_text only; remove it")
    threads = spec.options.get("onnx_threads", 1)  # checked with the config, before any embedding starts
    if spec.backend == "onnx" and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"encoder {spec.id!r}: options.onnx_threads must be an integer >= 1, got {threads!r}")
    return spec.backend


# What a text encoder spec that sets nothing gets from a model that is no sentence-transformers model.
TEXT_DEFAULTS = {"pooling": "mean", "max_length": 128, "prefix": ""}


def text_settings(spec: EncoderSpec) -> dict:
    """The effective pooling / max_length / prefix / normalize of a text encoder spec: an explicit config value wins,
    then what a sentence-transformers model says (modules.json, sentence_bert_config.json, prompts; a prefix that
    names one of its prompts, e.g. ``query``, becomes that prompt), then the config defaults."""
    from ..building.sentence_transformers import resolve_prompt, st_encoder_settings

    st = st_encoder_settings(spec.id, None if os.path.isdir(spec.id) else spec.revision)
    settings = {  # a value set in the config (not None) wins, then the ST model's, then TEXT_DEFAULTS
        "pooling": spec.pooling or st.get("pooling") or TEXT_DEFAULTS["pooling"],
        "max_length": spec.max_seq_length or st.get("max_seq_length") or TEXT_DEFAULTS["max_length"],
        "prefix": resolve_prompt(st, spec.prefix, f"encoder {spec.id!r}")
        if st
        else (spec.prefix or TEXT_DEFAULTS["prefix"]),
        "normalize": bool(st.get("normalize", False)) if spec.normalize is None else bool(spec.normalize),
        "subfolder": st.get("subfolder", ""),
        "lowercase": bool(st.get("do_lower_case", False)),
        "sentence_transformers": bool(st),
    }
    if st:
        from ..logging import get_logger

        get_logger(__name__).info(
            "%s is a sentence-transformers model: %s",
            spec.id,
            {k: settings[k] for k in ("pooling", "max_length", "prefix", "normalize")},
        )
    return settings


def _embedding_device():
    """This process's device: accelerate's (one GPU per process) under a multi-process launch, else cuda if any."""
    import torch

    from .distributed import partial_state, world_size

    if world_size() > 1:
        return partial_state().device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@register_encoder_kind("hf_text")
class HFTextEncoder:
    """Any transformers ``AutoModel`` + ``AutoTokenizer`` text encoder, pooled with the hf_bridges poolers; a
    sentence-transformers model (folder or Hub id with ``modules.json``) embeds as ``SentenceTransformer.encode``."""

    input_column = "text"

    def identity(self, spec: EncoderSpec) -> dict:
        if is_model2vec(model_config(spec.id, spec.revision)):  # AutoModel would fail on its config.json
            raise ConfigError(f"encoder {spec.id!r} is a model2vec static model: set kind: model2vec")
        settings = text_settings(spec)
        identity = {
            "kind": "hf_text",
            "id": spec.id,
            "revision": resolve_hf_revision(spec.id, spec.revision),
            "pooling": settings["pooling"],
            "max_length": settings["max_length"],
            "prefix": settings["prefix"],
        }
        if settings["lowercase"]:
            identity["lowercase"] = True
        if settings["normalize"]:  # only when on: caches of plain encoders keep their keys
            identity["normalize"] = True
        if check_backend(spec) != "torch":  # onnx embeds its own numbers (an int8 file very different ones): a run
            # must never read another backend's vectors; torch keys stay as they were, so earlier caches still hit
            from .onnx_backend import ONNX_FILE

            identity["backend"] = spec.backend
            identity["onnx_file"] = spec.options.get("onnx_file", ONNX_FILE)
        return identity

    def load(self, spec: EncoderSpec) -> EmbedFn:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from ..modeling.head import get_pooling

        backend = check_backend(spec)
        settings = text_settings(spec)
        revision_key = resolve_hf_revision(spec.id, spec.revision)
        revision = None if revision_key.startswith("local-") else revision_key
        where = {"revision": revision, **({"subfolder": settings["subfolder"]} if settings["subfolder"] else {})}
        tokenizer = AutoTokenizer.from_pretrained(spec.id, **where)
        pool = get_pooling(settings["pooling"])
        if backend == "onnx":  # only the transformer forward changes: tokens, sort, windows, pooling are the same
            if settings["pooling"] == "pooler":
                raise ConfigError(f"encoder {spec.id!r}: backend onnx gives token states only; use pooling mean or cls")
            from .onnx_backend import ONNX_FILE, load_onnx_encoder

            model = load_onnx_encoder(
                spec.id,
                revision_key,
                tokenizer,
                revision=revision,
                subfolder=settings["subfolder"],
                threads=spec.options.get("onnx_threads", 1),
                onnx_file=spec.options.get("onnx_file", ONNX_FILE),
            )
            device = torch.device("cpu")

            def states(**inputs):
                return SimpleNamespace(last_hidden_state=model(**inputs))
        else:
            model = AutoModel.from_pretrained(spec.id, **where).eval()
            device = _embedding_device()
            model.to(device)
            states = model
        prefix, max_length, normalize = settings["prefix"], settings["max_length"], settings["normalize"]
        lowercase = settings["lowercase"]

        from ..modeling.modeling_bridge import embed_in_length_order

        def forward(**inputs):
            return pool(states(**inputs), inputs.get("attention_mask")).float()

        @torch.inference_mode()
        def embed(batch: dict) -> np.ndarray:
            # Rows of one call are embedded in length-sorted sub-batches of spec.batch_size (padding trimmed per
            # sub-batch, order restored): a call with a whole shard of short mixed-length texts pads far less.
            texts = [prefix + (t or "") for t in batch[self.input_column]]
            texts = [t.lower() for t in texts] if lowercase else texts  # sentence_bert_config do_lower_case
            inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            inputs = dict(inputs.to(device))
            if "attention_mask" in inputs:
                embeddings = embed_in_length_order(  # no bar per call: the stitch cache shows one for the split
                    forward,
                    inputs.pop("input_ids"),
                    inputs.pop("attention_mask"),
                    spec.batch_size,
                    progress=False,
                    **inputs,
                )
            else:
                embeddings = forward(**inputs)
            if normalize:
                embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
            return embeddings.cpu().numpy()

        embed.sorts_rows = True  # the cache may pass thousands of rows per call: they are sorted and batched here
        if backend == "onnx":
            embed.onnx_file = model.path  # the file the session runs (benchmarks time a bare session on it)
        return embed
