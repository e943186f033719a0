"""``hf-bridges train CONFIG [key=value ...] [--resume PATH|latest]``: the Accelerate training loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..training.run import add_arguments

    parser = subparsers.add_parser("train", help="train a bridge model from a YAML config (Accelerate, LoRA)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.run import run as train_run

    train_run(args)
    return 0
