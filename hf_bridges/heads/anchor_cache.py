"""Anchor embeddings reused across attaches: ``from_encoder(enc, head=...)`` twice embeds the anchors once.

An entry is one safetensors file under ``HF_HOME/hf_bridges/anchors/``, keyed by everything that changes the
embeddings: the encoder's id and *resolved* snapshot commit (a local folder: a fingerprint of its files), pooling,
max sequence length, dtype, and the exact token ids and attention mask of the anchors (so the tokenizer and the
anchor texts are covered too). Only an encoder loaded unchanged from a snapshot qualifies: after any training step
the weights no longer match the key, so callers use this for freshly loaded, frozen encoders only.

Writes are atomic (temp file + rename) under a ``filelock`` per entry; a corrupt or mismatching entry is ignored and
rewritten; nothing here runs code (safetensors only).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

FORMAT = 1


def default_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_bridges" / "anchors"


def anchor_key(encoder_identity: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> str:
    """sha256 of the encoder identity and the anchors' exact model inputs."""
    digest = hashlib.sha256(json.dumps({"encoder": encoder_identity, "format": FORMAT}, sort_keys=True).encode())
    for tensor in (input_ids, attention_mask):
        t = tensor.detach().to("cpu", torch.int64).contiguous()
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:32]


def encoder_identity(
    name_or_path: str, revision: str | None, pooling: str, max_seq_length: int, dtype: torch.dtype
) -> dict | None:
    """The identity of a Hub snapshot or local folder, or None when it cannot be pinned (then do not cache)."""
    from ..stitching.encoder_kinds import resolve_hf_revision

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
    }


class AnchorCache:
    def __init__(self, root: os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str, num_anchors: int) -> torch.Tensor | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            embeddings = load_file(path)["embeddings"]
        except (SafetensorError, KeyError, OSError, ValueError):
            return None  # corrupt: the next put rewrites it
        if embeddings.dim() != 2 or embeddings.shape[0] != num_anchors or not torch.isfinite(embeddings).all():
            return None
        return embeddings

    def put(self, key: str, embeddings: torch.Tensor) -> Path:
        from filelock import FileLock
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        with FileLock(str(path) + ".lock"):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"embeddings": embeddings.detach().to("cpu").contiguous()}, str(tmp), metadata={"format": "1"})
            os.replace(tmp, path)
        return path
