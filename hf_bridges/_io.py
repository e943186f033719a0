"""Small file helpers shared by every writer: nothing is ever left half-written, files are hashed the same way."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

PathLike = str | os.PathLike


FAULT_ENV = "HF_BRIDGES_FAULT_AT"
_fault_counts: dict[str, int] = {}


def fault_point(step: str) -> None:
    """Fault injection for the kill tests: ``HF_BRIDGES_FAULT_AT=<step>[@N]`` ends the process (``os._exit(86)``,
    no cleanup, like SIGKILL) the N-th time (default 1st) ``step`` is reached. Unset: a dict lookup, nothing else."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != step:
        return
    _fault_counts[step] = _fault_counts.get(step, 0) + 1
    if _fault_counts[step] == int(nth or 1):
        if os.environ.get("HF_BRIDGES_FAULT_SIGNAL") == "KILL":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(86)


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter before Python 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: PathLike) -> None:
    """Give a file created by ``mkstemp``/``mkdtemp`` (0600/0700) the permissions a plain ``open`` would give."""
    mode = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, mode & ~current_umask())


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        make_readable(tmp)  # mkstemp makes 0600; a written file gets the usual permissions
        yield Path(tmp)
        make_readable(tmp)  # again: a writer that replaced the file (safetensors writes 0600) gets the same rule
        fault_point(f"atomic:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_safetensors(tensors: dict, path: PathLike, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` with the file mode every other file gets (0666 less the umask: safetensors
    creates its files 0600), so one rule holds for every file the package writes."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    make_readable(path)


def tensors_sha256(tensors: dict) -> str:
    """sha256 of named tensors (names, shapes, dtypes, bytes), written with a safetensors file and checked on read:
    safetensors checks its header, not its data."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------- journaled folder update
PREVIOUS = ".hf_bridges-previous"  # inside a folder being updated: the files an unfinished update replaced
JOURNAL = "journal.json"


def publish_files(staging: PathLike, target: PathLike, names: Sequence[str]) -> None:
    """Move ``staging/<name>`` into ``target`` for each name, in order, so that an interrupted update can be undone.

    The files about to be replaced are first hard-linked into ``target/.hf_bridges-previous/`` (published by one
    rename, with a journal of which names were replaced and which are new); they are dropped only once every new
    file is in. A kill in between leaves that folder: :func:`previous_version` reads through it and
    :func:`restore_previous` (``hf-bridges head recover FOLDER``; also the next update) puts the old version back.
    """
    staging, target = Path(staging), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    restore_previous(target)  # a killed earlier update: go back to the version before it first
    pending = target / f"{PREVIOUS}.tmp"
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir()
    replaced = [name for name in names if (target / name).is_file()]
    for name in replaced:
        try:
            os.link(target / name, pending / name)
        except OSError:  # a file system without hard links
            shutil.copy2(target / name, pending / name)
    journal = {"replaced": replaced, "added": [name for name in names if name not in replaced]}
    (pending / JOURNAL).write_text(json.dumps(journal), encoding="utf-8")
    fault_point("publish:journal")
    os.rename(pending, target / PREVIOUS)
    for name in names:
        fault_point("publish:replace")
        os.replace(staging / name, target / name)
    fault_point("publish:done")
    shutil.rmtree(target / PREVIOUS)


def previous_version(target: PathLike) -> dict[str, Path | None] | None:
    """Where each journaled name's previous version is (``None``: it did not exist) while an update is unfinished."""
    journal_file = Path(target) / PREVIOUS / JOURNAL
    if not journal_file.is_file():
        return None
    journal = json.loads(journal_file.read_text(encoding="utf-8"))
    where: dict[str, Path | None] = {name: None for name in journal["added"]}
    for name in journal["replaced"]:
        kept = Path(target) / PREVIOUS / name
        where[name] = kept if kept.is_file() else Path(target) / name  # moved back already by a killed restore
    return where


def restore_previous(target: PathLike) -> bool:
    """Undo an interrupted :func:`publish_files`; returns whether there was anything to undo. Safe to rerun."""
    target = Path(target)
    shutil.rmtree(target / f"{PREVIOUS}.tmp", ignore_errors=True)  # never published: nothing was replaced yet
    where = previous_version(target)
    if where is None:
        shutil.rmtree(target / PREVIOUS, ignore_errors=True)
        return False
    for name, kept in where.items():
        if kept is None:
            (target / name).unlink(missing_ok=True)
        elif kept.parent.name == PREVIOUS:
            os.replace(kept, target / name)
    shutil.rmtree(target / PREVIOUS)
    return True


def clean_staging_leftovers(target: Path) -> None:
    """Staging folders of killed saves (their process is gone) and backups of the old two-rename save."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        pid = stale.name[len(f".{target.name}.tmp-") :].split("-", 1)[0]
        if not pid.isdigit() or not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    if target.is_dir():
        for old in target.parent.glob(f".{target.name}.old-*"):
            shutil.rmtree(old, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own earlier staging (a save that raised): not in use any more
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
