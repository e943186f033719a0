"""bf16 training of the default config on one GPU: samples/s and peak GPU memory.

    python benchmarks/gpu_train.py                                   # one GPU, bf16, configs/train-bbc.yaml
    python benchmarks/gpu_train.py --device cpu --max-steps 2        # CPU smoke mode (what CI can run)

Runs the same Accelerate loop as ``hf-bridges train`` (so it also measures checkpointing and per-epoch
evaluation). Needs the encoders in the HF cache (``hf-bridges offline-seed``) for the default config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "train-bbc.yaml"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--precision", choices=["bf16", "fp16", "no"], default=None, help="default: bf16 on cuda, no on cpu"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (smoke mode)")
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)

    import torch

    from hf_bridges.training.config import load_config
    from hf_bridges.training.loop import train

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --max-steps N for the smoke mode")
    precision = args.precision or ("bf16" if args.device == "cuda" else "no")
    out = args.output_dir or tempfile.mkdtemp(prefix="hf_bridges_gpu_train_")
    overrides = [
        f"mixed_precision={precision}",
        f"cpu={args.device == 'cpu'}",
        f"output_dir={out}",
        "progress_bar=false",
    ]
    if args.max_steps:
        overrides.append(f"max_steps={args.max_steps}")
        overrides.append("num_epochs=1")
    if args.max_eval_samples:
        overrides.append(f"max_eval_samples={args.max_eval_samples}")
    cfg = load_config(args.config, [*overrides, *args.overrides])
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    results = train(cfg)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    last = results["history"][-1] if results["history"] else {}
    report = {
        "config": Path(args.config).name,
        "device": results["device"],
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "mixed_precision": results["mixed_precision"],
        "world_size": results["world_size"],
        "steps": results["steps"],
        "seconds": round(results["seconds"], 2),
        "train_samples_per_second": round(results["train_samples_per_second"] or 0.0, 1),
        "peak_gpu_memory_mib": round(peak, 1) if peak is not None else None,
        "eval_accuracy": last.get("accuracy"),
        "eval_macro_f1": last.get("macro_f1"),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
    sys.exit(0)
