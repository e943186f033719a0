"""Peak memory of a stitch run's head phase at 2k and 20k samples x 2,000 anchors (issue 21.4).

Each configuration runs in its own process: synthetic 384-d train / test embeddings (the embeddings themselves are
what any run holds), one relative head (``--projections``) trained ``--epochs`` epoch(s) through ``train_head`` and
scored with ``predict`` on the train and test splits, sharing one run cache as ``run_stitch`` does. Prints the peak
RSS above the process's RSS after the embeddings were made, next to the embeddings' size, with the relative-feature
budget ``--budget-mb`` (default 256 MiB, so that one split's features exceed it at 20k samples) and unbounded
(``HF_BRIDGES_FEATURE_CACHE_MB=1e9``: what the run kept before). The run's default budget is 1024 MiB.

    python benchmarks/stitch_memory.py [--samples 2000 20000] [--anchors 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, numpy as np, torch
torch.set_num_threads(1)
from hf_bridges.stitching.config import HeadSpec, MethodSpec, TrainingSpec
from hf_bridges.stitching.training import predict, train_head
n, k, projections, epochs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
g = np.random.default_rng(0)
labels = g.integers(0, 5, n)
train = (g.normal(size=(5, 384))[labels] + g.normal(size=(n, 384))).astype(np.float32)
test = train[: n // 4] + 0.1
anchors = train[:k].copy()
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cache = {}
method = MethodSpec(name="m", projections=projections, aggregation="sum")
head = train_head(method, HeadSpec(), TrainingSpec(num_epochs=epochs, batch_size=256), train, labels, anchors, 5, 0,
                  feature_cache=cache)
predict(head, train, anchors, feature_cache=cache)
predict(head, test, anchors, feature_cache=cache)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mib": (peak - start) / 1024, "embeddings_mib": (train.nbytes + test.nbytes) / 2**20}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--anchors", type=int, default=2000)
    parser.add_argument("--projections", default="cosine,euclidean")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--budget-mb", default="256", help="HF_BRIDGES_FEATURE_CACHE_MB of the bounded runs")
    args = parser.parse_args()
    print(f"{args.anchors} anchors, projections {args.projections}, {args.epochs} epoch(s), 1 thread")
    print(
        f"| samples | embeddings (train + test) | peak above start, budget {args.budget_mb} MiB | unbounded (before) |"
    )
    print("|---|---|---|---|")
    for n in args.samples:
        row = []
        for budget in (args.budget_mb, "1e9"):
            env = {**os.environ, "HF_BRIDGES_FEATURE_CACHE_MB": budget, "OMP_NUM_THREADS": "1"}
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), str(args.anchors), args.projections, str(args.epochs)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            row.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"| {n} | {row[0]['embeddings_mib']:.0f} MiB | {row[0]['grew_mib']:.0f} MiB | {row[1]['grew_mib']:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
