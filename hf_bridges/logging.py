"""The ``hf_bridges`` logger hierarchy, with transformers-style verbosity control.

Library code logs to ``get_logger(__name__)`` (children of ``hf_bridges``) and never prints; the CLI prints.
Verbosity: ``set_verbosity_info()`` etc., or ``HF_BRIDGES_VERBOSITY=debug|info|warning|error|critical`` in the
environment (read on first use), as ``TRANSFORMERS_VERBOSITY`` does for transformers. One stderr handler is
attached to the ``hf_bridges`` root only, and propagation stays on, so pytest's caplog and the application's own
logging configuration see every record.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from logging import CRITICAL, DEBUG, ERROR, INFO, WARNING

LIBRARY = "hf_bridges"
ENV_VAR = "HF_BRIDGES_VERBOSITY"
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR, "critical": CRITICAL}
DEFAULT_LEVEL = WARNING

_lock = threading.Lock()
_handler: logging.Handler | None = None


def _env_level() -> int:
    value = os.environ.get(ENV_VAR)
    if not value:
        return DEFAULT_LEVEL
    if value.lower() not in LEVELS:
        logging.getLogger(LIBRARY).warning("unknown %s=%r; use one of %s", ENV_VAR, value, ", ".join(LEVELS))
        return DEFAULT_LEVEL
    return LEVELS[value.lower()]


def _configure() -> None:
    global _handler
    with _lock:
        if _handler is not None:
            return
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("[%(levelname)s|%(name)s] %(message)s"))
        root = logging.getLogger(LIBRARY)
        root.addHandler(_handler)
        root.setLevel(_env_level())


def get_logger(name: str | None = None) -> logging.Logger:
    """The logger for ``name`` (a module's ``__name__`` under ``hf_bridges``, or the library root)."""
    _configure()
    if not name:
        return logging.getLogger(LIBRARY)
    return logging.getLogger(name if name == LIBRARY or name.startswith(LIBRARY + ".") else f"{LIBRARY}.{name}")


def get_verbosity() -> int:
    _configure()
    return logging.getLogger(LIBRARY).getEffectiveLevel()


def set_verbosity(level: int | str) -> None:
    """Set the level of every ``hf_bridges`` logger (an int such as ``logging.INFO`` or a name like ``"info"``)."""
    _configure()
    if isinstance(level, str):
        if level.lower() not in LEVELS:
            raise ValueError(f"unknown verbosity {level!r}; use one of {list(LEVELS)}")
        level = LEVELS[level.lower()]
    logging.getLogger(LIBRARY).setLevel(level)


def set_verbosity_debug() -> None:
    set_verbosity(DEBUG)


def set_verbosity_info() -> None:
    set_verbosity(INFO)


def set_verbosity_warning() -> None:
    set_verbosity(WARNING)


def set_verbosity_error() -> None:
    set_verbosity(ERROR)


def disable_default_handler() -> None:
    """Remove the stderr handler (the application configures logging itself)."""
    _configure()
    logging.getLogger(LIBRARY).removeHandler(_handler)


def enable_default_handler() -> None:
    _configure()
    logging.getLogger(LIBRARY).addHandler(_handler)


def disable_progress_bar() -> None:
    """Hide hf_bridges' own progress bars (anchor embedding, ``encode``, ``predict``), as
    ``transformers.logging.disable_progress_bar()`` does for transformers: the ``"hf_bridges"`` group of
    ``huggingface_hub.utils.disable_progress_bars``. The global switches (``HF_HUB_DISABLE_PROGRESS_BARS=1``,
    transformers' and huggingface_hub's) hide them too."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars(LIBRARY)


def enable_progress_bar() -> None:
    from huggingface_hub.utils import enable_progress_bars

    enable_progress_bars(LIBRARY)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """All bars a job triggers hidden for the ``with`` block when ``enabled`` is false (hf_bridges' anchor / encode
    bars, ``datasets``' map, transformers' shard writing), then as they were: a job's ``progress_bar: false``
    must not leave other libraries' bars on its stderr."""
    import datasets.utils.logging as datasets_logging
    import transformers.utils.logging as transformers_logging
    from huggingface_hub.utils import are_progress_bars_disabled

    switches = [
        (lambda: not are_progress_bars_disabled(LIBRARY), disable_progress_bar, enable_progress_bar),
        (
            datasets_logging.is_progress_bar_enabled,
            datasets_logging.disable_progress_bar,
            datasets_logging.enable_progress_bar,
        ),
        (
            transformers_logging.is_progress_bar_enabled,
            transformers_logging.disable_progress_bar,
            transformers_logging.enable_progress_bar,
        ),
    ]
    hidden = [] if enabled else [(off, on) for shown, off, on in switches if shown()]
    for off, _ in hidden:
        off()
    try:
        yield
    finally:
        for _, on in hidden:
            on()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller point at the first line outside hf_bridges
    (the user's call), however many package frames (model method, building layer, attach) lie between."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level
