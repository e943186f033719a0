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

Next to the embeddings, a small JSON record per (tokenizer, anchor texts, prefix, max length) keeps what tokenising
the anchors told the last attach (:class:`TokenRecord`): the head's tokenizer fingerprint (sha256 of the anchors'
token ids, up to 512 tokens), the unknown-token counts, the sha256 of the bridge's anchor inputs and, per anchor, how
many characters of it reach those inputs. It is keyed like the embeddings, on what pins the tokenizer exactly: only a
tokenizer the attach loads itself from the same Hub snapshot (resolved commit) or local folder (file fingerprint) as
the encoder, with the transformers and tokenizers versions that load it; a tokenizer passed in is always run. So a
cached re-attach tokenises the anchors once (the bridge's inputs, cut to those characters and compared with the
recorded sha256; any difference: the whole texts, and the record is replaced), not twice (issue 21).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..logging import get_logger

if TYPE_CHECKING:
    from ..modeling.modeling_bridge import BridgePreTrainedModel

TOKENS_FORMAT = 1  # the JSON token records (TokenRecord)
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


def cache_root(cache: bool | os.PathLike) -> Path | None:
    """The folder of an attach's ``anchor_cache`` argument: ``True``: :func:`default_root`; ``False``: none."""
    return (default_root() if cache is True else Path(cache)) if cache else None


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
    bridge: BridgePreTrainedModel,
    encoder: Any,
    revision: str | None,
    encoder_kwargs: dict | None,
    cache: bool | os.PathLike = True,
) -> str:
    """Give a freshly built text or image bridge its anchor embeddings: from the cache when this encoder snapshot embedded
    these exact anchor inputs before, else embedded (and stored). Returns ``"cache"`` or ``"embedded"``.

    ``encoder``: what the caller loaded the encoder from; only a Hub id or folder is cached. ``cache``: ``True``
    (:func:`default_root`), ``False``, or a folder. A cache that cannot be written costs a warning in the log, never
    the attach."""
    root = cache_root(cache)
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


# ------------------------------------------------------------------------------------ what the tokenizer told
HEX64 = frozenset("0123456789abcdef")


def tokenizer_identity(
    name_or_path: Any, revision: str | None, subfolder: str, tokenizer: Any, loaded_here: bool
) -> dict | None:
    """What pins ``tokenizer`` exactly, or None (then nothing is recorded and the anchors are tokenised): it was
    loaded by the attach itself (``loaded_here``) from the Hub snapshot or folder ``name_or_path`` (``subfolder``),
    whose resolved commit (a folder: its file fingerprint), the tokenizer class and the transformers / tokenizers
    versions are the identity. A tokenizer object passed in may have been changed since it was loaded: never pinned."""
    if not loaded_here or not isinstance(name_or_path, (str, os.PathLike)):
        return None
    import tokenizers
    import transformers

    from ..snapshots import resolve_hf_revision

    name = os.fspath(name_or_path)
    try:
        resolved = resolve_hf_revision(name, revision or "main")
    except Exception:
        return None
    if resolved == (revision or "main") and not os.path.isdir(name):
        return None  # online and not yet cached: a ref name, not a commit
    return {
        "id": name,
        "revision": resolved,
        "subfolder": subfolder or "",
        "class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def tokens_key(identity: dict, anchors: list, prefix: str | None, max_seq_length: int | None) -> str:
    """sha256 of the tokenizer identity, the settings the bridge tokenises with, and every anchor text."""
    settings = {"tokenizer": identity, "prefix": prefix, "max_seq_length": max_seq_length, "format": TOKENS_FORMAT}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for text in anchors:
        data = str(text).encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return "tokens-" + digest.hexdigest()[:32]


def store_digest(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> str:
    """sha256 of a text bridge's anchor inputs (token ids and mask, shapes included)."""
    return anchor_key({"anchor inputs": True}, input_ids, attention_mask)


@dataclass
class TokenRecord:
    """What tokenising a head's anchors gave, for one pinned tokenizer, prefix and max length (see the module doc).

    ``anchor_ids_sha256``: the tokenizer fingerprint's digest (None: the head records none); ``unknown`` / ``total``:
    the unknown-token check's counts (None: the tokenizer has no unknown token); ``prefix`` / ``max_seq_length``: what
    the bridge resolved them to; ``store_sha256``: :func:`store_digest` of its anchor inputs from the whole texts;
    ``cuts``: per anchor, the characters that give those same inputs (None: the whole text), or None."""

    anchor_ids_sha256: str | None
    unknown: int | None
    total: int | None
    prefix: str
    max_seq_length: int
    store_sha256: str
    cuts: list | None

    def to_json(self) -> str:
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return json.dumps({"format": TOKENS_FORMAT, "sha256": hashlib.sha256(body.encode()).hexdigest(), "body": body})

    @classmethod
    def from_json(cls, text: str, num_anchors: int) -> TokenRecord:
        """The record, or ValueError when it is not one written for ``num_anchors`` anchors (never trusted half)."""
        outer = json.loads(text)
        if (
            not isinstance(outer, dict)
            or outer.get("format") != TOKENS_FORMAT
            or not isinstance(outer.get("body"), str)
        ):
            raise ValueError("not a token record of this format")
        if hashlib.sha256(outer["body"].encode()).hexdigest() != outer.get("sha256"):
            raise ValueError("its content does not match the sha256 written with it")
        body = json.loads(outer["body"])
        if not isinstance(body, dict) or set(body) != {f.name for f in fields(cls)}:
            raise ValueError("unexpected fields")
        record = cls(**body)

        def count(value, allow_none=True) -> bool:
            return (value is None and allow_none) or (
                isinstance(value, int) and not isinstance(value, bool) and value >= 0
            )

        def digest(value) -> bool:
            return isinstance(value, str) and len(value) in (32, 64) and set(value) <= HEX64

        cuts = record.cuts
        ok = (
            (record.anchor_ids_sha256 is None or digest(record.anchor_ids_sha256))
            and count(record.unknown)
            and count(record.total)
            and isinstance(record.prefix, str)
            and count(record.max_seq_length, allow_none=False)
            and digest(record.store_sha256)
            and (cuts is None or (isinstance(cuts, list) and len(cuts) == num_anchors and all(map(count, cuts))))
        )
        if not ok:
            raise ValueError("a field has the wrong type or size")
        return record


def read_tokens(root: Path | None, key: str | None, num_anchors: int) -> TokenRecord | None:
    """The token record ``key`` under ``root``, or None (absent; bad: logged and removed)."""
    if root is None or key is None:
        return None
    path = root / f"{key}.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.warning("could not read the anchor token record %s (%s); tokenising the anchors", path, error)
        return None
    try:
        return TokenRecord.from_json(text, num_anchors)
    except (ValueError, TypeError) as error:
        logger.warning("anchor token record %s is bad (%s): dropped, the anchors are tokenised again", path, error)
        path.unlink(missing_ok=True)
        return None


def write_tokens(root: Path | None, key: str | None, record: TokenRecord) -> None:
    """Write ``record`` atomically (temp file + rename); a cache that cannot be written costs a log line."""
    if root is None or key is None:
        return
    path = root / f"{key}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp.write_text(record.to_json(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        logger.warning("could not write the anchor token record under %s (%s)", root, error)
        with contextlib.suppress(OSError):  # e.g. the cache "folder" is a file: there is no temp file either
            tmp.unlink(missing_ok=True)


def anchor_cuts(texts: list, offsets: list, max_seq_length: int) -> list:
    """Per anchor, the characters of it that can reach ``max_seq_length`` tokens: up to the end of its token number
    ``max_seq_length + 1`` (``offsets``: of its raw tokens, no special tokens), then to the next whitespace; None
    when the whole text is needed. Attach compares what the cut texts give with the whole texts' record."""
    cuts = []
    for text, spans in zip(texts, offsets):
        text = str(text)
        if len(spans) <= max_seq_length + 1:
            cuts.append(None)
            continue
        end = int(spans[max_seq_length][1])
        while end < len(text) and not text[end].isspace():
            end += 1
        cuts.append(end if end < len(text) else None)
    return cuts
