"""Anchor embeddings reused across attaches: ``from_encoder(enc, head=...)`` twice embeds the anchors once.

An entry is one safetensors file under ``HF_HOME/hf_bridges/anchors/`` (or ``$HF_BRIDGES_ANCHOR_CACHE``; set it
to ``0`` to turn the cache off), keyed by everything that changes the embeddings: the encoder's id and *resolved*
snapshot commit (a local folder: a fingerprint of its files), pooling, max sequence length, normalisation, dtype,
the loading keyword arguments, and the exact model inputs of the anchors: token ids and attention mask (so the
tokenizer, the prefix and the anchor texts are covered too), or the uint8 anchor images and the image processor's
settings. Only an encoder that the attach itself loads from a Hub id or folder qualifies (an in-memory model may
have been trained since it was loaded: it is always embedded).

Each entry carries the sha256 of its tensor (shape, dtype, bytes) in its safetensors metadata, checked on every read:
a corrupt, truncated or mismatching entry is logged, dropped and embedded again. Writes are atomic (temp file +
rename) and reads and writes of an entry take its ``filelock``, so no reader sees a half-written entry. A cache that
cannot be written (a full disk: ``OSError``, or safetensors' ``SafetensorError``) costs a warning, never the attach.
Nothing here runs code (safetensors only).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..logging import get_logger

FORMAT = 2  # 2: entries carry the sha256 of their tensor (format-1 entries have other keys: never read)
ENV = "HF_BRIDGES_ANCHOR_CACHE"
OFF = ("0", "off", "false", "no", "")

logger = get_logger(__name__)  # the library's verbosity (hf_bridges.logging), like transformers'


def default_root() -> Path | None:
    """``$HF_BRIDGES_ANCHOR_CACHE`` (``0`` / ``off``: no cache), else ``HF_HOME/hf_bridges/anchors``."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value)
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_bridges" / "anchors"


def anchor_key(encoder_identity: dict, *inputs: torch.Tensor) -> str:
    """sha256 of the encoder identity and the anchors' exact model inputs (token ids and mask, or uint8 pixels)."""
    digest = hashlib.sha256(json.dumps({"encoder": encoder_identity, "format": FORMAT}, sort_keys=True).encode())
    for tensor in inputs:
        t = tensor.detach().to("cpu").contiguous()
        t = t if t.dtype == torch.uint8 else t.to(torch.int64)
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:32]


def encoder_identity(
    name_or_path: str, revision: str | None, pooling: str, max_seq_length: int, dtype: torch.dtype, **settings: Any
) -> dict | None:
    """The identity of a Hub snapshot or local folder, or None when it cannot be pinned (then do not cache).
    ``settings``: anything else that changes the embeddings (normalisation, loading arguments), JSON-able."""
    from ..snapshots import resolve_hf_revision

    try:
        resolved = resolve_hf_revision(name_or_path, revision or "main")
    except Exception:
        return None
    if resolved == (revision or "main") and not os.path.isdir(name_or_path):
        return None  # online and not yet cached: a ref name, not a commit
    return {
        "id": name_or_path,
        "revision": resolved,
        "pooling": pooling,
        "max_seq_length": max_seq_length,
        "dtype": str(dtype),
        **settings,
    }


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of the entry (name, shape, dtype, bytes): what it is checked against on read."""
    from .._io import tensors_sha256

    return tensors_sha256({"embeddings": tensor})


class AnchorCache:
    def __init__(self, root: os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def _lock(self, path: Path):
        from filelock import FileLock

        return FileLock(str(path) + ".lock", timeout=600)

    def get(self, key: str, num_anchors: int) -> torch.Tensor | None:
        """The entry's embeddings, or None (absent, or bad: then it is logged and removed, so it is embedded again)."""
        from safetensors import SafetensorError, safe_open

        path = self.path(key)
        if not path.is_file():
            return None
        problem = None
        try:
            with self._lock(path):
                try:
                    with safe_open(str(path), framework="pt") as handle:
                        expected = (handle.metadata() or {}).get("sha256")
                        # a copy: the tensor would otherwise be a view of the file's memory map, and a file
                        # changed in place after the check below (not by this package) would change it
                        embeddings = handle.get_tensor("embeddings").clone()
                except (SafetensorError, OSError, ValueError, KeyError) as error:
                    problem = f"unreadable ({type(error).__name__}: {error})"
                else:
                    if expected != tensor_digest(embeddings):
                        problem = "its content does not match the sha256 written with it"
                    elif embeddings.dim() != 2 or embeddings.shape[0] != num_anchors:
                        problem = f"shape {list(embeddings.shape)}, not ({num_anchors}, hidden)"
                    elif not torch.isfinite(embeddings).all():
                        problem = "it holds NaN or inf"
                if problem is not None:
                    path.unlink(missing_ok=True)
        except OSError as error:  # the lock file cannot be created (a read-only cache): read nothing
            logger.warning("could not lock the anchor cache entry %s (%s); embedding the anchors", path, error)
            return None
        if problem is not None:
            logger.warning("anchor cache entry %s is bad (%s): dropped, the anchors are embedded again", path, problem)
            return None
        return embeddings

    def put(self, key: str, embeddings: torch.Tensor) -> Path:
        from .._io import _process_alive, fault_point, save_safetensors

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tensor = embeddings.detach().to("cpu").contiguous()
        with self._lock(path):
            for stale in self.root.glob(f".{path.name}.*.tmp"):  # of writers killed mid-write (we hold the lock)
                pid = stale.name[len(path.name) + 2 : -4]
                if not pid.isdigit() or not _process_alive(int(pid)):
                    stale.unlink(missing_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                save_safetensors(
                    {"embeddings": tensor}, tmp, metadata={"format": str(FORMAT), "sha256": tensor_digest(tensor)}
                )
                fault_point("anchor_cache:written")
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return path


def fill_anchor_embeddings(
    bridge, encoder: Any, revision: str | None, encoder_kwargs: dict | None, cache: bool | os.PathLike = True
) -> str:
    """Give a freshly built text or image bridge its anchor embeddings: from the cache when this encoder snapshot embedded
    these exact anchor inputs before, else embedded (and stored). Returns ``"cache"`` or ``"embedded"``.

    ``encoder``: what the caller loaded the encoder from; only a Hub id or folder is cached. ``cache``: ``True``
    (:func:`default_root`), ``False``, or a folder. A cache that cannot be written costs a warning in the log, never
    the attach."""
    root = (default_root() if cache is True else Path(cache)) if cache else None
    key = _bridge_key(bridge, encoder, revision, encoder_kwargs) if root is not None else None
    if key is not None:
        embeddings = AnchorCache(root).get(key, bridge.config.num_anchors)
        if embeddings is not None:
            logger.info("anchor embeddings of %s reused from %s", encoder, root)
            bridge.set_anchor_embeddings(embeddings)
            return "cache"
    embeddings = bridge.refresh_anchors()
    if key is not None:
        from safetensors import SafetensorError

        try:
            AnchorCache(root).put(key, embeddings)
        except (OSError, SafetensorError) as error:  # safetensors reports a full disk as SafetensorError
            logger.warning("could not write the anchor cache under %s (%s); the next attach embeds again", root, error)
    return "embedded"


def _bridge_key(bridge, encoder: Any, revision: str | None, encoder_kwargs: dict | None) -> str | None:
    from ..modeling.modeling_bridge import AnchorStore, ImageAnchorStore

    if not isinstance(encoder, (str, os.PathLike)) or not isinstance(bridge.anchors, (AnchorStore, ImageAnchorStore)):
        return None  # an in-memory model (maybe trained since it was loaded), or module anchors
    text = isinstance(bridge.anchors, AnchorStore)
    try:  # plain data only: a quantization config object, a device map of modules... cannot be keyed safely
        loading = json.loads(json.dumps(encoder_kwargs or {}, sort_keys=True))
        # images: what turns the stored uint8 anchors into pixel values (size, crop, mean / std, resampling)
        processor = None if text else json.loads(json.dumps(bridge.image_processor.to_dict(), sort_keys=True))
    except (TypeError, AttributeError):
        return None
    config = bridge.config
    identity = encoder_identity(
        os.fspath(encoder),
        revision,
        config.pooling,
        config.max_seq_length,
        next(bridge.encoder.parameters()).dtype,
        normalize=bool(config.normalize_embeddings),
        encoder_kwargs=loading,
        **({} if text else {"image_processor": processor}),
    )
    if identity is None:
        return None
    if text:
        return anchor_key(identity, bridge.anchors.input_ids, bridge.anchors.attention_mask)
    return anchor_key(identity, bridge.anchors.pixels)
