"""Static-embedding text encoders for ``hf-bridges stitch``: ``kind: model2vec``.

A model2vec ``StaticModel`` (a token-embedding table, mean-pooled, no attention) loaded with model2vec itself, the
library these models are made and published with (``StaticModel.from_pretrained``; the same folder also loads in
sentence-transformers as ``StaticEmbedding``, which returns float16 and NaN for an empty text). ``id`` is a Hub id
(e.g. ``hf-bridges-offline/m2v-all-MiniLM-L6-v2-pca256``, placed by ``hf-bridges offline-seed --model2vec``, or
``minishlab/potion-base-8M``) or a local folder. ``max_seq_length`` (tokens) and ``normalize`` default to the
model's ``config.json``; ``prefix`` is prepended to every text; ``pooling`` can only be ``mean``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os

import numpy as np

from ..snapshots import resolve_hf_revision
from .config import ConfigError, EncoderSpec
from .encoder_kinds import EmbedFn, model_config, register_encoder_kind

INSTALL = "pip install 'model2vec>=0.10,<0.11'"
DEFAULT_MAX_LENGTH = 512  # model2vec's own default when config.json has none


def _model2vec_version() -> str:
    try:
        return metadata.version("model2vec")
    except metadata.PackageNotFoundError:
        raise ConfigError(f"kind: model2vec needs the model2vec package: {INSTALL}") from None


def _settings(spec: EncoderSpec, revision: str) -> dict:
    """Effective max_length / normalize / prefix: a value set in the config wins, then the model's config.json."""
    if spec.pooling not in (None, "mean"):
        raise ConfigError(
            f"encoder {spec.id!r}: a model2vec static model mean-pools its token vectors; pooling "
            f"{spec.pooling!r} is not available (remove it, or set pooling: mean)"
        )
    config = model_config(spec.id, revision)
    # a StaticModel built by hand saves a config.json without model_type; every transformers config has one
    if config is not None and config.get("model_type", "model2vec") != "model2vec":
        raise ConfigError(
            f"encoder {spec.id!r} is not a model2vec static model (config.json model_type "
            f"{config.get('model_type')!r}); use kind: hf_text"
        )
    config = config or {}
    return {
        "max_length": spec.max_seq_length or config.get("max_length") or DEFAULT_MAX_LENGTH,
        "normalize": bool(config.get("normalize", False)) if spec.normalize is None else bool(spec.normalize),
        "prefix": spec.prefix or "",
    }


@register_encoder_kind("model2vec")
class Model2VecEncoder:
    """A model2vec static model: the mean of its token vectors (optionally L2-normalised), float32."""

    input_column = "text"

    def identity(self, spec: EncoderSpec) -> dict:
        version = _model2vec_version()
        revision = resolve_hf_revision(spec.id, spec.revision)
        # the model2vec version is part of the key: tokenisation and pooling live in the package, not in the files
        return {
            "kind": "model2vec",
            "id": spec.id,
            "revision": revision,
            **_settings(spec, revision),
            "model2vec": version,
        }

    def load(self, spec: EncoderSpec) -> EmbedFn:
        _model2vec_version()
        from model2vec import StaticModel

        revision = resolve_hf_revision(spec.id, spec.revision)
        settings = _settings(spec, revision)
        folder = spec.id
        if not os.path.isdir(folder):  # the exact cached snapshot (offline: no request), so revision is honoured
            from huggingface_hub import snapshot_download

            folder = snapshot_download(spec.id, revision=None if revision.startswith("local-") else revision)
        try:
            model = StaticModel.from_pretrained(
                folder, normalize=settings["normalize"], max_length=settings["max_length"]
            )
        except (OSError, ValueError) as error:
            raise ConfigError(f"encoder {spec.id!r}: not a loadable model2vec static model ({error})") from None
        prefix, max_length = settings["prefix"], settings["max_length"]

        def embed(batch: dict) -> np.ndarray:
            texts = [prefix + (t or "") for t in batch[self.input_column]]
            vectors = model.encode(texts, max_length=max_length, use_multiprocessing=False, show_progress_bar=False)
            return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)  # model2vec stores float16

        # Each row's vector is independent of the others in its call (no padding): the cache may pass thousands of
        # rows per call, which model2vec batches itself.
        embed.sorts_rows = True
        return embed
