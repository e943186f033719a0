"""Atomic Accelerate checkpoints: written into a temp folder, renamed into place, then a ``latest`` pointer.

A crash or a full disk mid-write leaves at most a ``.tmp-*`` folder (removed on the next save) and never a
``latest`` that points at a partial checkpoint. Model weights are saved without DDP's ``module.`` prefix, so a
checkpoint reads the same whatever the world size that wrote it. The RNG states are kept without pickle
(``rng_state_<process>.safetensors``: tensors, and JSON metadata for Python's generator) in place of Accelerate's
``random_states_<process>.pkl``; a checkpoint holding any ``.pkl`` file is refused on resume (no pickle is read).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._io import fault_point, make_readable, save_safetensors, tensors_sha256, write_text_atomic
from ..modeling.registry import HfBridgesError

if TYPE_CHECKING:
    from accelerate import Accelerator

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "train_state.json"
PREFIX = "module."
RNG_FILE = "rng_state_{}.safetensors"


class CheckpointError(HfBridgesError, OSError):
    """A checkpoint could not be written (e.g. no space left); the previous ``latest`` is intact."""


def strip_prefix_hook(models: list[torch.nn.Module], weights: list[dict[str, torch.Tensor]], output_dir: str) -> None:
    """``register_save_state_pre_hook``: drop the DDP wrapper's ``module.`` prefix from the saved keys."""
    for i, state in enumerate(weights):
        weights[i] = type(state)((k[len(PREFIX) :] if k.startswith(PREFIX) else k, v) for k, v in state.items())


def add_prefix_on_load(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook on a DDP wrapper: unprefixed checkpoint keys get ``module.`` back."""
    for key in list(state_dict):
        if key.startswith(prefix) and not key.startswith(prefix + PREFIX):
            state_dict[prefix + PREFIX + key[len(prefix) :]] = state_dict.pop(key)


def install_prefix_hooks(accelerator: Accelerator, model: torch.nn.Module) -> None:
    accelerator.register_save_state_pre_hook(strip_prefix_hook)
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model.register_load_state_dict_pre_hook(add_prefix_on_load)
    # before Accelerate's own loading, which finds no random_states_*.pkl and leaves the RNGs alone
    accelerator.register_load_state_pre_hook(lambda models, folder: load_rng_state(folder, accelerator.process_index))


def save_rng_state(folder: Path, process_index: int) -> Path:
    """This process's RNG states (Python, NumPy, torch CPU and accelerator devices) as safetensors + JSON metadata."""
    import random

    import numpy as np

    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "torch": torch.get_rng_state(),
        "python": torch.tensor(words, dtype=torch.int64),
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
    }
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    meta = {"python": [version, gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    path = Path(folder) / RNG_FILE.format(process_index)
    save_safetensors(tensors, path, metadata={"rng": json.dumps(meta), "sha256": tensors_sha256(tensors)})
    return path


def load_rng_state(folder: str | os.PathLike, process_index: int) -> bool:
    """Restore what :func:`save_rng_state` wrote (False: no file, e.g. a checkpoint of an older release)."""
    import random

    import numpy as np
    from safetensors import safe_open

    path = Path(folder) / RNG_FILE.format(process_index)
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["rng"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (no dict)
    random.setstate((meta["python"][0], tuple(tensors["python"].tolist()), meta["python"][1]))
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    devices = sorted(int(k.split(".")[1]) for k in tensors if k.startswith("cuda."))
    cuda = [tensors[f"cuda.{i}"] for i in devices]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return True


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / CHECKPOINTS


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest`` names, or None; temp folders of interrupted saves are never returned."""
    pointer = checkpoint_root(output_dir) / LATEST
    if not pointer.is_file():
        return None
    path = checkpoint_root(output_dir) / pointer.read_text().strip()
    return path if (path / STATE_FILE).is_file() else None


def resolve_checkpoint(resume: str, output_dir: str | os.PathLike) -> Path:
    """``latest`` (in ``output_dir``), a checkpoint folder, or a run folder (its latest checkpoint); checked for
    truncated or corrupted files before Accelerate reads it."""
    if resume == "latest":
        found = latest_checkpoint(output_dir)
        if found is None:
            raise OSError(f"--resume latest: no complete checkpoint under {checkpoint_root(output_dir)}")
        return verify_checkpoint(found)
    path = Path(resume)
    if (path / STATE_FILE).is_file():
        return verify_checkpoint(path)
    for run_dir in (path, path.parent):
        found = latest_checkpoint(run_dir)
        if found is not None:
            return verify_checkpoint(found)
    raise OSError(f"--resume {resume}: not a checkpoint folder (no {STATE_FILE}) and no run with a latest checkpoint")


def _damage(path: Path) -> str | None:
    """Why a checkpoint file cannot be read, or None; reads headers and CRCs only (nothing is unpickled)."""
    import zipfile

    from safetensors import safe_open

    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:  # checks the header against the file size
                for key in handle.keys():  # noqa: SIM118 (a safetensors handle is no dict)
                    handle.get_slice(key)
                expected = (handle.metadata() or {}).get("sha256")
                if expected is not None:  # the RNG states carry their digest (model weights: the header only)
                    tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
                    if tensors_sha256(tensors) != expected:
                        return "its content does not match the sha256 written with it"
        elif path.suffix == ".pkl":  # written by Accelerate up to hf_bridges 0.2; now rng_state_*.safetensors
            return (
                "a pickle file, which hf_bridges no longer writes and never reads (RNG states are now in "
                "rng_state_*.safetensors; 0.2 checkpoints held Accelerate's pickles); delete it to resume without "
                "restoring the random state, if you trust the checkpoint otherwise"
            )
        elif path.suffix in (".bin", ".pt"):  # torch.save zip archives (optimizer, scheduler)
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"a bad CRC in {bad}"
        elif path.name == STATE_FILE:
            json.loads(path.read_text())
    except Exception as error:  # SafetensorError, BadZipFile, ValueError, OSError
        return f"{type(error).__name__}: {error}"
    return None


def verify_checkpoint(checkpoint: Path) -> Path:
    """``checkpoint`` if every file in it reads; else an error naming the file and the other kept checkpoints."""
    for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        problem = _damage(path)
        if problem is None:
            continue
        others = [
            p
            for p in sorted(checkpoint.parent.glob("step-*"), reverse=True)
            if p != checkpoint and (p / STATE_FILE).is_file()
        ]
        hint = (
            f"resume from the other kept checkpoint instead: --resume {others[0]}"
            if others
            else "no other complete checkpoint is kept: start again without --resume"
        )
        what = "refused" if path.suffix == ".pkl" else "truncated or corrupted"
        raise CheckpointError(f"checkpoint file {path} is {what} ({problem}); {hint}")
    return checkpoint


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    step: int,
    state: dict[str, Any],
    keep: int = 2,
    suffix: str = "",
) -> Path:
    """``accelerator.save_state`` into ``.tmp-step-N``, then rename to ``step-N`` and move ``latest``.

    Every process takes part (each saves its own RNG state); weights and optimizer are written by the main
    process only. On OSError the partial folder is removed and :class:`CheckpointError` says what is left.
    """
    root = checkpoint_root(output_dir)
    name = f"step-{step:08d}{suffix}"  # e.g. "-epoch-end": never overwrites the folder `latest` may name
    final, tmp = root / name, root / f".tmp-{name}"
    main = accelerator.is_main_process
    if main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    error: BaseException | None = None
    try:
        accelerator.save_state(str(tmp))
        (tmp / f"random_states_{accelerator.process_index}.pkl").unlink(missing_ok=True)  # Accelerate's pickle
        save_rng_state(tmp, accelerator.process_index)
        if main:
            write_text_atomic(tmp / STATE_FILE, json.dumps({**state, "step": step}, indent=2, default=str))
    except Exception as exc:  # OSError, or safetensors' own SafetensorError wrapping an I/O error (disk full)
        error = exc
    failed = torch.tensor([0 if error is None else 1], device=accelerator.device)
    if int(accelerator.reduce(failed, reduction="sum").item()):
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        previous = latest_checkpoint(output_dir)
        raise CheckpointError(
            f"could not write the checkpoint at step {step} ({error or 'failed on another process'}); "
            f"the partial write was removed and latest still points at {previous or 'nothing (no earlier checkpoint)'}. "
            "Free disk space and rerun with --resume latest."
        ) from error
    if main:
        for path in tmp.rglob("*"):  # safetensors and torch.save write 0600: one file-mode rule for the package
            make_readable(path)
        if final.exists():  # only when a run redoes a step after a failure: latest points elsewhere then
            shutil.rmtree(final)
        fault_point("checkpoint:written")
        os.replace(tmp, final)
        fault_point("checkpoint:renamed")
        write_text_atomic(root / LATEST, name)
        complete = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file())
        for old in complete[: max(len(complete) - max(keep, 1), 0)]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
