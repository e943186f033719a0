"""The head-only format: what a bridge head is on disk, written atomically and read without running code.

A head folder (or Hub repo) holds namespaced files, so it can share a repo with a full model (like open_clip):

    bridge_head_config.json   format version, projections, aggregation, normalisation, labels, pooling, modality,
                              the training encoder (name, revision, model_type, hidden size), file checksums
    bridge_head.safetensors   the ``model.head`` state dict (projections' norms, aggregation, classifier)
    anchors.parquet           the raw anchor inputs (+ labels), so any encoder can embed them again
    anchor_space.safetensors  the training encoder's anchor embeddings (float16): the anchor-vs-anchor matrices
                              of every projection are recomputed from them for ``stitch_report``
    README.md                 the model card (bridge_head_card.md in a folder shared with a full model)

Only JSON, safetensors and Parquet are read: loading never imports or unpickles anything from the head.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._io import (
    PREVIOUS,
    clean_staging_leftovers,
    fault_point,
    make_readable,
    previous_version,
    publish_files,
    sha256_bytes,
    sha256_file,
)
from ..logging import get_logger, user_stacklevel
from ..modeling.configuration_bridge import HeadConfig
from .files import (
    ANCHOR_SPACE_NAME,
    ANCHORS_NAME,
    CARD_NAME,
    CONFIG_NAME,
    DATA_FILES,
    HEAD_CARD_NAME,
    HEAD_FILES,
    HEAD_FORMAT_VERSION,
    MAX_ANCHORS,
    MAX_CARD_BYTES,
    MAX_CONFIG_BYTES,
    PLAIN_HEAD_FORMAT,
    WEIGHTS_NAME,
    HeadFormatError,
    HeadSaveError,
    _package_version,
    check_inside,
    head_card_name,
    max_anchor_chars,
)
from .parquet_anchors import read_anchors
from .validation import check_weights_header, tokenizer_fingerprint, validate_head_config

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..modeling.modeling_bridge import BridgePreTrainedModel

logger = get_logger(__name__)

# What a head needs to be rebuilt on any encoder: these BridgeConfig fields (input_prefix: the training prefix,
# recorded, not passed on) and every HeadConfig field, written flat (the shape formats 2 and 3 share).
BRIDGE_KEYS = (
    "modality",
    "pooling",
    "max_seq_length",
    "num_anchors",
    "anchor_batch_size",
    "problem_type",
    "input_prefix",
)
HEAD_CONFIG_KEYS = BRIDGE_KEYS + HeadConfig.field_names()
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class BridgeHead:
    """A head as data: its JSON config, weights, raw anchors and the training encoder's anchor embeddings."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    anchors: list[Any]
    anchor_labels: list[int | None] | None
    anchor_embeddings: torch.Tensor
    card: str | None = None
    source: str | None = None  # folder or repo id it was read from
    revision: str | None = None  # the Hub commit sha it was downloaded at (None: a local folder)

    @property
    def encoder(self) -> dict[str, Any]:
        return self.config["encoder"]

    @property
    def has_classifier(self) -> bool:
        return any(key.startswith("classifier.") for key in self.state_dict)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(i): label for i, label in (self.config.get("id2label") or {}).items()}

    @property
    def training_prefix(self) -> str:
        """The text prepended to every input while the head was trained ("" for none, or for an older head)."""
        return self.config.get("input_prefix") or ""

    def config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``from_encoder`` / ``BridgeConfig`` that rebuild this head."""
        from ..modeling.configuration_bridge import LEGACY_DEFAULTS

        kwargs = {key: self.config[key] for key in HEAD_CONFIG_KEYS if key in self.config}
        # a key absent from an older head means what that release did, not today's default
        kwargs.update({key: value for key, value in LEGACY_DEFAULTS.items() if key not in kwargs})
        head = {key: kwargs.pop(key) for key in HeadConfig.field_names() if key in kwargs}
        kwargs["head_config"] = HeadConfig.from_dict(head, where=f"{self.source or 'head'}: {CONFIG_NAME}", legacy=True)
        kwargs.pop("num_anchors", None)  # implied by the anchors
        kwargs.pop("input_prefix", None)  # the training encoder's: attach_head records it (see training_prefix)
        if self.id2label:
            kwargs["id2label"] = self.id2label
            kwargs["label2id"] = {label: i for i, label in self.id2label.items()}
        return kwargs


# ------------------------------------------------------------------------------------------------------- build
def head_from_model(model: BridgePreTrainedModel, weights_dtype: str = "float32") -> BridgeHead:
    """Collect what a head needs from a bridge model (the training encoder's anchors are embedded if stale)."""
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"unknown weights_dtype {weights_dtype!r}; valid: {sorted(WEIGHT_DTYPES)}")
    config = model.config
    # Image bridges keep their anchors as uint8 tensors; a head stores them as PNG bytes (Parquet binary column).
    if getattr(model.anchors, "pixels", None) is not None:  # an image bridge: its uint8 anchors as PNG files
        raw_anchors = anchor_png_bytes(model)
    else:
        raw_anchors = config.anchors
    if not raw_anchors and getattr(model.anchors, "inputs", None) is not None:  # a module bridge's tensor anchors
        raise HeadFormatError(
            f"save_head writes text and image heads; a {type(model).__name__} keeps its head with its raw anchor "
            "tensors in save_pretrained(folder): load it with from_pretrained(folder, module=...) to attach "
            "another module"
        )
    if not raw_anchors:
        raise HeadFormatError(
            "this model has no raw anchor inputs in its config, so its head cannot move to another encoder"
        )
    if len(raw_anchors) > MAX_ANCHORS:
        raise HeadFormatError(
            f"this model has {len(raw_anchors)} anchors; a head holds at most {MAX_ANCHORS} (what an attach embeds "
            "and reports on in bounded memory): build the bridge with fewer anchors"
        )
    if config.modality == "text":
        raw_anchors = _cut_texts(raw_anchors, config.max_seq_length)
    encoder = getattr(model, "encoder", None)
    record = {key: getattr(config, key) for key in HEAD_CONFIG_KEYS}
    has_set = record["relative_anchors"] is not None
    if not has_set:  # no alignment set: the file stays format 2, readable by older releases
        del record["relative_anchors"]
    record.update(
        library_name="hf_bridges",
        bridge_head_format_version=HEAD_FORMAT_VERSION if has_set else PLAIN_HEAD_FORMAT,
        hf_bridges_version=_package_version(),
        head_class=type(model).__name__,
        num_labels=config.num_labels if model.head.classifier is not None else 0,
        id2label={str(i): label for i, label in config.id2label.items()} if model.head.classifier is not None else None,
        weights_dtype=weights_dtype,
        encoder={
            "name_or_path": config.encoder_name_or_path,
            "revision": config.encoder_revision,
            "commit_hash": _encoder_commit(config.encoder_name_or_path, config.encoder_revision, encoder),
            "model_type": getattr(config.encoder, "model_type", None),
            "hidden_size": config.hidden_size,
            "normalize_embeddings": bool(config.normalize_embeddings),  # the training side's (its card says it)
        },
    )
    tokenizer = getattr(model, "tokenizer", None)
    if config.modality == "text" and tokenizer is not None and callable(tokenizer):
        record["tokenizer"] = tokenizer_fingerprint(tokenizer, raw_anchors)
    dtype = WEIGHT_DTYPES[weights_dtype]
    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in _file_names(active_head(model.head).state_dict()).items()
    }
    return BridgeHead(
        config=record,
        state_dict=state,
        anchors=list(raw_anchors),
        anchor_labels=list(config.anchor_labels) if config.anchor_labels is not None else None,
        anchor_embeddings=model.anchor_embeddings.detach().float().cpu(),
    )


def active_head(head: torch.nn.Module) -> torch.nn.Module:
    """The head module the model computes with. Under peft (``get_peft_model(bridge, LoraConfig(task_type=
    "SEQ_CLS"))``) the head is a ``ModulesToSaveWrapper``: the trained copy of the active adapter (the untouched
    original when adapters are disabled), never the wrapper, whose state dict holds both under prefixed keys."""
    modules = head.__dict__.get("_modules", {})
    if "original_module" not in modules or "modules_to_save" not in modules:
        return head
    active = list(getattr(head, "active_adapters", None) or [])
    if getattr(head, "disable_adapters", False) or not active or active[0] not in modules["modules_to_save"]:
        return modules["original_module"]
    return modules["modules_to_save"][active[0]]


def _encoder_commit(name: str | None, revision: str | None, encoder: Any) -> str | None:
    """The snapshot commit the training encoder was loaded at: transformers 4's ``config._commit_hash``, else the
    cached snapshot of ``revision`` (what ``from_pretrained`` loaded; transformers 5 configs keep no commit)."""
    commit = getattr(getattr(encoder, "config", None), "_commit_hash", None)
    if commit or not isinstance(name, str) or os.path.isdir(name):
        return commit
    from ..snapshots import resolved_revision

    resolved = resolved_revision(name, revision)
    return resolved if resolved and re.fullmatch(r"[0-9a-f]{40}", resolved) else None  # a snapshot, not a ref name


def _cut_texts(anchors: list, max_seq_length: int | None) -> list:
    """Anchor texts cut to the characters that can reach the model (:func:`~.files.max_anchor_chars`), which is what
    read_head accepts; lone surrogates (not encodable as UTF-8) are refused, naming the anchor."""
    limit = max_anchor_chars(max_seq_length)
    out = []
    for i, text in enumerate(anchors):
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise HeadFormatError(
                    f"anchor {i} ({text[:40]!r}) holds a character that is not valid Unicode text ({error.reason} at "
                    f"{error.start}, e.g. a lone surrogate): clean the anchor text before saving the head"
                ) from None
            if len(text) > limit:
                logger.warning("anchor %d has %d characters; the head keeps its first %d", i, len(text), limit)
                text = text[:limit]
        out.append(text)
    return out


# ------------------------------------------------------------------------------------------------------- write


def _write_files(head: BridgeHead, folder: Path, card: str | None, card_name: str = CARD_NAME) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .._io import save_safetensors as save_file

    save_file(head.state_dict, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    space = head.anchor_embeddings.to(torch.float16)
    if not torch.isfinite(space).all():  # magnitudes beyond float16: keep full precision
        space = head.anchor_embeddings.float()
    save_file({"anchor_embeddings": space.contiguous()}, str(folder / ANCHOR_SPACE_NAME), metadata={"format": "pt"})
    labels = head.anchor_labels if head.anchor_labels is not None else [None] * len(head.anchors)
    table = pa.table({"anchor": pa.array(head.anchors), "label": pa.array(labels, type=pa.int64())})
    pq.write_table(table, folder / ANCHORS_NAME)
    config = dict(head.config)
    config["anchor_space"] = {
        "tensor": "anchor_embeddings",
        "dtype": str(space.dtype).replace("torch.", ""),
        "shape": list(space.shape),
    }
    config["files"] = {
        name: {"sha256": sha256_file(folder / name), "size": (folder / name).stat().st_size} for name in DATA_FILES
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if card is not None:
        (folder / card_name).write_text(card, encoding="utf-8")
    for path in folder.iterdir():
        make_readable(path)


def write_head(head: BridgeHead, folder: os.PathLike | str, card: str | None = None) -> Path:
    """Write ``head`` into ``folder`` so that an interrupted save leaves the previous head loadable.

    The files go to a staging folder next to the target first. A new target is that folder, renamed. An existing
    one (a head folder, or a folder shared with a full model) gets the files through :func:`publish_files`, the
    config last: until the last file is in, the replaced ones stay in ``.hf_bridges-previous/``, which the
    loaders read through and the next save (or ``hf-bridges head recover``) restores. Leftovers of killed saves
    are removed.
    """
    return _publish_head(folder, lambda staging, card_name: _write_files(head, staging, card, card_name), card)


def copy_head(source: os.PathLike | str, folder: os.PathLike | str) -> Path:
    """Copy a read and verified head folder (a pulled snapshot) into ``folder`` the way :func:`write_head` writes
    one: staged, the previous files kept until the last is in, and the card named by :func:`head_card_name` (a
    folder shared with a full model keeps its own ``README.md``). The files' bytes are the source's."""
    source = Path(source)
    card = source / HEAD_CARD_NAME if (source / HEAD_CARD_NAME).is_file() else source / CARD_NAME

    def fill(staging: Path, card_name: str) -> None:
        for name in (*DATA_FILES, CONFIG_NAME):
            shutil.copyfile(source / name, staging / name)
        if card.is_file():
            shutil.copyfile(card, staging / card_name)
        for path in staging.iterdir():
            make_readable(path)

    return _publish_head(folder, fill, "" if card.is_file() else None)


def _publish_head(folder: os.PathLike | str, fill: Callable[[Path, str], None], card: str | None) -> Path:
    """``fill(staging, card_name)`` writes the head's files into a staging folder next to ``folder``; they are then
    renamed into place (a new folder) or published one by one with the config last (an existing one)."""
    from safetensors import SafetensorError

    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise HeadFormatError(f"{target} exists and is not a folder; choose another path for the head")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HeadSaveError(f"cannot create {target} ({error}); choose another path for the head") from None
    clean_staging_leftovers(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        card_name = head_card_name(target)
        try:
            fill(staging, card_name)
        except (OSError, SafetensorError) as error:  # safetensors reports a full disk as SafetensorError
            kept = "the previous head there is intact" if target.exists() else "nothing was written there"
            raise HeadSaveError(
                f"could not write the head to {target} ({type(error).__name__}: {error}); {kept}. Free disk space "
                "(or choose another folder) and save again"
            ) from None
        fault_point("save_head:staged")
        if not target.exists():
            make_readable(staging)
            os.rename(staging, target)
            return target
        publish_files(staging, target, [*DATA_FILES, *([card_name] if card is not None else []), CONFIG_NAME])
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# -------------------------------------------------------------------------------------------------------- read
def _not_a_head(folder: Path, source: str) -> HeadFormatError:
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if "config.json" in names:
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            model_type = None
        if model_type == "hf_bridges":
            return HeadFormatError(
                f"{source} holds a full bridge model, not a head (no {CONFIG_NAME}): load it with "
                "AutoModelForSequenceClassification.from_pretrained(...), or publish its head with model.save_head(...)"
            )
    return HeadFormatError(
        f"{source} is not a bridge head: it has no {CONFIG_NAME} (files: {names or 'none'}). "
        "Heads are written by model.save_head(...) / model.push_head_to_hub(...)"
    )


def interrupted_save_error(folder: Path, source: str | None = None) -> HeadFormatError | None:
    """A missing head folder next to the backup an interrupted two-rename save (hf_bridges <= format-1 writers)
    left: the error names the exact command that puts it back."""
    leftovers = sorted(folder.parent.glob(f".{folder.name}.old-*")) if folder.parent.is_dir() else []
    if not leftovers:
        return None
    return HeadFormatError(
        f"{source or folder} is missing, but an interrupted save left the previous head at "
        f"{leftovers[-1]}: put it back with `mv {leftovers[-1]} {folder}`"
    )


def head_files(folder: Path, source: str) -> dict[str, Path]:
    """Where each head file is: in ``folder``, or, while a killed save left its journal, the previous version's."""
    where = previous_version(folder)
    names = (*HEAD_FILES, CARD_NAME, HEAD_CARD_NAME)
    if where is None:
        return {name: folder / name for name in names}
    warnings.warn(
        f"{source}: an interrupted save_head left the previous head's files in {folder / PREVIOUS}; reading that "
        f"version. `hf-bridges head recover {folder}` restores it on disk (the next save_head does too)",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    return {name: (where[name] or folder / PREVIOUS / name) if name in where else folder / name for name in names}


def read_head_config(
    folder: os.PathLike | str, source: str | None = None, files: dict[str, Path] | None = None
) -> dict[str, Any]:
    """Read and validate ``bridge_head_config.json`` only (cheap: for ``inspect``)."""
    folder = Path(folder)
    source = source or str(folder)
    if not folder.is_dir():
        error = interrupted_save_error(folder, source)
        if error is not None:
            raise error
        raise HeadFormatError(f"{source} is not a folder; pass a head folder or a Hub repo id such as org/name")
    files = files or head_files(folder, source)
    if not files[CONFIG_NAME].is_file():
        raise _not_a_head(folder, source)
    path = check_inside(files[CONFIG_NAME], folder, source)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise HeadFormatError(
            f"{source}/{CONFIG_NAME} has {path.stat().st_size:,} bytes, over the {MAX_CONFIG_BYTES:,} a head config "
            "may hold; not a bridge head config: save or push the head again"
        )
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        why = "nested too deeply" if isinstance(error, RecursionError) else f"not valid JSON: {error}"
        raise HeadFormatError(f"{source}/{CONFIG_NAME} is corrupted ({why}); save or push the head again") from None
    if (
        not isinstance(config, dict)
        or config.get("library_name") != "hf_bridges"
        or "bridge_head_format_version" not in config
    ):
        raise HeadFormatError(
            f"{source}/{CONFIG_NAME} is not an hf_bridges head config (no library_name/format version)"
        )
    version = config["bridge_head_format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HeadFormatError(
            f"{source}/{CONFIG_NAME}: field 'bridge_head_format_version' must be a positive integer, "
            f"got {version!r} ({type(version).__name__}); save or push the head again"
        )
    if version > HEAD_FORMAT_VERSION:
        raise HeadFormatError(
            f"{source} was written with head format version {version}, newer than this hf_bridges reads "
            f"(up to {HEAD_FORMAT_VERSION}, hf_bridges {_package_version()}): upgrade with `pip install -U hf_bridges`"
        )
    missing = [key for key in ("encoder", "projections", "num_anchors", "modality", "files") if key not in config]
    if missing:
        raise HeadFormatError(f"{source}/{CONFIG_NAME} is incomplete: missing {missing}; save or push the head again")
    validate_head_config(config, f"{source}/{CONFIG_NAME}")
    return config


def read_head(folder: os.PathLike | str, source: str | None = None, verify: bool = True) -> BridgeHead:
    """Read a head folder; every file is checked against the checksums recorded in its config."""
    import pyarrow as pa
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    folder = Path(folder)
    source = source or str(folder)
    files = head_files(folder, source) if folder.is_dir() else None
    config = read_head_config(folder, source, files)
    for name in DATA_FILES:
        if not files[name].is_file():
            raise HeadFormatError(f"{source} is missing {name}: the head is incomplete; save or push it again")
        check_inside(files[name], folder, source)
    try:
        check_weights_header(files[WEIGHTS_NAME], config, source)  # shapes from the header, before any tensor
        # each file is read once and parsed from the bytes its checksum verified: a file replaced after the check
        # cannot be loaded in its place
        data = {name: _verified_bytes(files[name], config, name, source, verify) for name in DATA_FILES}
        state = safetensors_load(data[WEIGHTS_NAME])
        space = safetensors_load(data[ANCHOR_SPACE_NAME])
        anchors, labels = read_anchors(pa.BufferReader(data[ANCHORS_NAME]), config, source)
    except (SafetensorError, pa.ArrowException, OSError) as error:
        raise HeadFormatError(f"{source} has a corrupted file ({error}); save or push the head again") from None
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise HeadFormatError(
                f"{source}/{WEIGHTS_NAME}: tensor {key!r} holds NaN or inf values; the head is "
                "broken (retrain it, or save it again from a model with finite weights)"
            )
    embeddings = space.get("anchor_embeddings")
    hidden = config["encoder"].get("hidden_size")
    if embeddings is None or tuple(embeddings.shape) != (config["num_anchors"], hidden):
        raise HeadFormatError(
            f"{source}/{ANCHOR_SPACE_NAME} does not hold ({config['num_anchors']}, {hidden}) anchor embeddings"
        )
    if not embeddings.is_floating_point():
        raise HeadFormatError(
            f"{source}/{ANCHOR_SPACE_NAME}: tensor 'anchor_embeddings' is of dtype "
            f"{str(embeddings.dtype).replace('torch.', '')}; an anchor space is floating point (float16 / float32), "
            "never cast from integers or booleans: save the head again"
        )
    if not torch.isfinite(embeddings).all():
        raise HeadFormatError(
            f"{source}/{ANCHOR_SPACE_NAME}: tensor 'anchor_embeddings' holds NaN or inf values; "
            "the training encoder's anchor space is broken: save the head again"
        )
    card_path = files[HEAD_CARD_NAME] if files[HEAD_CARD_NAME].is_file() else files[CARD_NAME]
    return BridgeHead(
        config=config,
        state_dict={k: v.float() if v.is_floating_point() else v for k, v in state.items()},
        anchors=anchors,
        anchor_labels=labels,
        anchor_embeddings=embeddings.float(),
        card=read_card(card_path, folder, source),
        source=source,
    )


def _verified_bytes(path: Path, config: dict, name: str, source: str, verify: bool) -> bytes:
    """The file's bytes, read once; with ``verify``, their sha256 must be the one recorded in the config, and no more
    than the recorded size is read (a file grown or swapped since is an error, not an allocation)."""
    entry = config["files"].get(name) or {}
    size, expected = entry.get("size"), entry.get("sha256")
    with open(path, "rb") as handle:
        data = handle.read() if size is None or not verify else handle.read(size + 1)
    if verify and ((size is not None and len(data) != size) or (expected and sha256_bytes(data) != expected)):
        raise HeadFormatError(
            f"{source}/{name} is corrupted (its size or sha256 differs from the ones in {CONFIG_NAME}); "
            "download it again (hf-bridges head pull --force) or save the head again"
        )
    return data


def read_card(path: Path, folder: Path, source: str) -> str | None:
    """The card's text, or None. It is documentation: an oversized or non-UTF-8 card costs a warning (undecodable
    bytes are replaced), never the head; a link out of the folder is refused like any other head file."""
    if not path.is_file():
        return None
    check_inside(path, folder, source)
    size = path.stat().st_size
    if size > MAX_CARD_BYTES:
        logger.warning("%s: %s has %d bytes (over %d); the card is not read", source, path.name, size, MAX_CARD_BYTES)
        return None
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        logger.warning("%s: %s is not UTF-8 (%s); undecodable bytes are replaced", source, path.name, error.reason)
        return data.decode("utf-8", errors="replace")


def _file_names(state: dict) -> dict:
    """The head registers its classifier MLP as ``mlp`` (peft's SEQ_CLS recipe); head files keep ``classifier.*``."""
    return {("classifier." + k[4:] if k.startswith("mlp.") else k): v for k, v in state.items()}


def anchor_png_bytes(bridge: Any) -> list[bytes]:
    """The anchor images as PNG files (lossless, compact): how a head-only save stores them in Parquet."""
    import io

    from PIL import Image

    files = []
    for image in bridge.anchors.pixels.cpu():
        array = image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return files
