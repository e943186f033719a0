"""Train a bridge model: ``python -m hf_bridges.training CONFIG [key=value ...] [--resume PATH|latest]``.

The same module runs under any launcher (Accelerate reads the environment they set):

    accelerate launch --num_processes 8 -m hf_bridges.training configs/train-bbc-lora.yaml
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m hf_bridges.training configs/train-tiny.yaml   # CPU, 2 processes
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..modeling.registry import HfBridgesError


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="a preset name (train-tiny) or a YAML file")
    parser.add_argument(
        "overrides", nargs="*", type=_override, metavar="key=value", help="override config keys (lora.r=4 for nested)"
    )
    parser.add_argument("--resume", metavar="PATH|latest", help="a checkpoint folder, a run folder, or 'latest'")
    return parser


def _override(text: str) -> str:
    """A malformed override is a usage error (exit 2), as any other malformed argument."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value (e.g. output_dir=runs/x or lora.r=8)")
    return text


def run(args: argparse.Namespace) -> dict[str, Any]:
    from .config import load_config  # here, not at import: the CLI's --help must not import torch
    from .loop import train

    config = load_config(args.config, args.overrides)
    results = train(config, resume=args.resume)
    if results.get("saved"):
        last = results["history"][-1] if results["history"] else {}
        print(
            f"trained {results['steps']} steps on {results['world_size']} process(es): "
            f"accuracy {last.get('accuracy', float('nan')):.4f}, macro-F1 {last.get('macro_f1', float('nan')):.4f}; "
            f"saved {', '.join(results['saved'].values())}"
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(prog="python -m hf_bridges.training", description=__doc__.splitlines()[0])
    )
    args = parser.parse_intermixed_args(argv)  # key=value overrides after --resume too
    try:
        run(args)
    except (HfBridgesError, ValueError, OSError) as error:
        print(f"hf_bridges.training: error: {error}", file=sys.stderr)
        return 1
    return 0
