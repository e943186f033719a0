"""The ``hf-bridges`` command: relative product heads that move between encoders.

Each subcommand lives in ``hf_bridges/commands/<name>.py`` and defines ``register(subparsers)``; modules there are
discovered, so a new subcommand is one new file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands
from .modeling.registry import HfBridgesError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-bridges", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action="version", version=f"hf_bridges {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    _accept_debug_anywhere(parser)
    return parser


def _accept_debug_anywhere(parser: argparse.ArgumentParser) -> None:
    """Every error line says "rerun with --debug": a user appends it to the failing command, so every subcommand
    takes it too (SUPPRESS: absent there, it leaves the top-level value alone)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if "--debug" not in sub._option_string_actions:
                    sub.add_argument(
                        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback"
                    )
                _accept_debug_anywhere(sub)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, except that ``key=value`` overrides after an option (``train CONFIG --resume latest
    lr=0.1``) join the others: argparse fills a ``nargs="*"`` positional once, before the option, and then
    refused them as "unrecognized arguments"."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(_is_override(a) for a in extra):
        args.overrides.extend(extra)
        return args
    return parser.parse_args(argv)  # argparse's own message and exit status 2 for anything else


def _is_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (HfBridgesError, ValueError, OSError, KeyError, RuntimeError, FloatingPointError) as error:
        if args.debug:
            raise
        print(f"hf-bridges {args.command}: error: {error}\n(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's 128 + SIGINT, not a traceback of the frame it hit
        if args.debug:
            raise
        print(f"\nhf-bridges {args.command}: interrupted{INTERRUPTED.get(args.command, '')}", file=sys.stderr)
        return 130


# what an interrupted run keeps (every write is atomic: an interrupted run leaves no half-written file)
INTERRUPTED = {
    "train": "; continue from the last complete checkpoint with --resume latest",
    "stitch": "; rerun the same command: the embeddings already cached are reused",
}


if __name__ == "__main__":
    sys.exit(main())
