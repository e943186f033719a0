"""Small file helpers shared by every writer: nothing is ever left half-written, files are hashed the same way."""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


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
        fault_point(f"atomic:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and a rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
