"""Whole-run timing split of `hf-bridges stitch` (embedding vs heads vs evaluation) and the cache speed-up.

Runs the same config twice against a fresh temporary embedding cache: the first run embeds everything, the second
re-embeds nothing. Prints ratios measured in this one process (absolute seconds on shared CPUs are noise).

    python benchmarks/stitch_timing.py configs/stitch-bbc.yaml --max-train 600 --max-test 200 --epochs 10 --seeds 0
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    from hf_bridges.stitching import load_config, run_stitch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/stitch-bbc.yaml")
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-test", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--alignment", type=int, help="anchors.alignment (default: the config's, cut to what fits)")
    args = parser.parse_args()

    def config():
        cfg = load_config(args.config)
        cfg.dataset.max_train = args.max_train or cfg.dataset.max_train
        cfg.dataset.max_test = args.max_test or cfg.dataset.max_test
        cfg.training.num_epochs = args.epochs or cfg.training.num_epochs
        cfg.seeds = args.seeds or cfg.seeds
        if args.alignment is not None:
            cfg.anchors.alignment = args.alignment
        elif cfg.dataset.max_train:  # a subset: the alignment set takes what the anchors leave
            cfg.anchors.alignment = min(cfg.anchors.alignment, max(cfg.dataset.max_train - cfg.anchors.num_anchors, 0))
        return cfg

    with tempfile.TemporaryDirectory() as tmp:
        first = run_stitch(config(), os.path.join(tmp, "out1"), cache_dir=os.path.join(tmp, "cache"), quiet=True)
        second = run_stitch(config(), os.path.join(tmp, "out2"), cache_dir=os.path.join(tmp, "cache"), quiet=True)
    t1, t2 = first["timing_s"], second["timing_s"]
    rows = first["dataset"]["train"] + first["dataset"]["test"]
    heads = len(first["runs"]) // len(first["config"]["encoders"])
    print(f"config {args.config}: {len(first['config']['encoders'])} encoders x {rows} rows, {heads} heads trained")
    print("first run (cold cache), share of the total:")
    for part in ("setup", "embedding", "heads", "evaluation"):
        print(f"  {part:<11} {t1[part] / t1['total']:.3f}")
    rest = t1["total"] - sum(t1[p] for p in ("setup", "embedding", "heads", "evaluation"))
    print(f"  other       {rest / t1['total']:.3f}  (anchor selection; setup = validation + dataset loading)")
    print(f"heads / embedding (cold): {t1['heads'] / t1['embedding']:.3f}")
    print(f"cache: second-run embedding / first-run embedding: {t2['embedding'] / t1['embedding']:.4f}")
    print(f"cache: second-run total / first-run total:         {t2['total'] / t1['total']:.3f}")
    embedded = sum(s["rows_embedded"] for s in second["cache"]["per_encoder"].values())
    print(f"rows re-embedded by the second run: {embedded}")


if __name__ == "__main__":
    main()
