"""One exception family: every error hf_bridges raises on bad input derives from :class:`HfBridgesError`.

The specific classes also derive from the builtin a caller would catch without knowing this package
(``ValueError`` for bad values, ``OSError`` for files), so ``except ValueError`` keeps working. The CLI turns any
``HfBridgesError`` into one line (a traceback only with ``--debug``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HfBridgesError(Exception):
    """Base of every error raised by hf_bridges for bad input, files or state; the message names the fix."""


class ConfigError(HfBridgesError, ValueError):
    """A config value (YAML preset, ``BridgeConfig`` field, head config) is missing, of the wrong type or unknown."""


class UnknownNameError(ConfigError, KeyError):
    """A name that no registry holds; the message suggests the closest registered one."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a registered name is close to ``value``, else an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
