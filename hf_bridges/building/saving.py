"""How the bridge models save and load with the package installed: staged saves (never a truncated file, config
last, journaled), a corrupted weights file named at load, an interrupted save warned about."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

from .._io import publish_files
from ..logging import user_stacklevel
from ..modeling.registry import HfBridgesError

_PREVIOUS = ".hf_bridges-previous"  # an unfinished save's journal (hf_bridges._io.publish_files)


class WeightsMismatchError(HfBridgesError, RuntimeError):
    """A saved model whose weights do not fit its ``config.json`` (a RuntimeError, as transformers raises it)."""


class ModelFileError(HfBridgesError, OSError):
    """A saved model's file (``config.json``, a ``*.safetensors``) is truncated or corrupted; names it and the fix."""


def checked_load(load: Callable[..., Any], source: Any, args: tuple, kwargs: dict) -> Any:
    """``load(source, ...)``, warning about an interrupted save's journal and naming a corrupted weights file."""
    folder = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    local = folder is not None and os.path.isdir(folder)
    if local and os.path.isdir(os.path.join(folder, _PREVIOUS)):
        warnings.warn(
            f"{folder}: an interrupted save_pretrained left the previous version's files in "
            f"{os.path.join(folder, _PREVIOUS)}; loading the folder as it is (possibly mixed). Put the "
            f"previous version back with `hf-bridges head recover {folder}`",
            stacklevel=user_stacklevel(),
        )
    try:
        return load(source, *args, **kwargs)
    except Exception as error:
        broken = (corrupted_config(folder) or corrupted_weights(folder)) if local else None
        if broken is None and isinstance(error, RuntimeError) and "ignore_mismatched_sizes" in str(error):
            raise WeightsMismatchError(
                f"{source}: the weights do not have the shapes its config.json describes (the load report above "
                "lists the tensors): an edited config.json, or weights of another model; save the model again. To "
                "re-initialise the mismatched layers on purpose (e.g. another num_labels), pass "
                "ignore_mismatched_sizes=True"
            ) from error
        if broken is None:
            raise
        raise ModelFileError(
            f"{broken} is truncated or corrupted ({type(error).__name__}: {error}); save the model again "
            f"or restore that file (after an interrupted save: `hf-bridges head recover {folder}`)"
        ) from None


def staged_save(model: Any, save: Callable[..., Any], save_directory: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``save`` (``PreTrainedModel.save_pretrained``) into a staging folder next to the target, then move the
    files in, ``config.json`` last (journaled by ``hf_bridges._io.publish_files``), and write the card."""
    target = os.path.abspath(os.fspath(save_directory))
    parent, base = os.path.split(target)
    os.makedirs(parent or ".", exist_ok=True)
    _remove_dead_staging(parent, base)
    staging = tempfile.mkdtemp(prefix=f".{base}.tmp-{os.getpid()}-", dir=parent)
    try:
        result = save(staging, *args, **kwargs)
        tokenizer = model._get_tokenizer() if hasattr(model, "_get_tokenizer") else model.tokenizer
        if tokenizer is not None:  # a reloaded bridge's is loaded lazily: load it to save it
            tokenizer.save_pretrained(staging)
        names = sorted(
            (n for n in os.listdir(staging) if os.path.isfile(os.path.join(staging, n))),
            key=lambda n: n == "config.json",
        )  # config last
        mode = 0o666 & ~_umask()
        for name in names:
            os.chmod(os.path.join(staging, name), mode)
        publish_files(staging, target, names)  # journaled: the replaced files are kept until the last is in
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from ..heads.cards import write_model_card

    write_model_card(model, target)  # README.md: the bridge's card (a user's own card is kept)
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_dead_staging(parent: str, base: str) -> None:
    """Staging folders of killed saves (``.NAME.tmp-PID-*`` whose process is gone)."""
    prefix = f".{base}.tmp-"
    for name in os.listdir(parent or "."):
        pid = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:
            pass


def corrupted_config(folder: str) -> str | None:
    """``folder/config.json`` when it is there but not a JSON object (transformers only says "not a valid JSON")."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return None if isinstance(json.load(handle), dict) else path
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return path


def corrupted_weights(folder: str) -> str | None:
    """The first ``*.safetensors`` file in ``folder`` whose header or size is wrong, else None."""
    try:
        from safetensors import safe_open
    except ImportError:
        return None
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(folder, name)
        try:
            with safe_open(path, framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (a safetensors handle is no dict)
                    handle.get_slice(key)
                end = max((o[1] for o in _data_offsets(path)), default=0)
            if os.path.getsize(path) < end:
                return path
        except Exception:
            return path
    return None


def _data_offsets(path: str) -> list:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    return [
        (8 + size + start, 8 + size + stop)
        for key, value in header.items()
        if key != "__metadata__"
        for start, stop in [value["data_offsets"]]
    ]
