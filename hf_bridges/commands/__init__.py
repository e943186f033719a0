"""Subcommands of ``hf-bridges``: one module each, exposing ``register(subparsers)``.

Modules import their heavy dependencies inside the command function, so ``hf-bridges --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``least`` (a bad value is a usage error, exit 2, naming the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value

    parse.__name__ = f"whole number >= {least}"
    return parse
