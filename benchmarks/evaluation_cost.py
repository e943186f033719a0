"""Evaluation of a stitch run next to its predict-only part, and how both grow with the anchor count (issue 21.3).

Two synthetic encoders (384-d; the second a random linear image of the first plus noise), ``--test`` test rows,
the default head (aligned, alignment set of 2x the anchors) and a four-projection relative head with label-free
selection, each trained for one epoch. For every anchor count, ``--seeds`` heads per method are scored on the pair
(A -> B) with ``evaluate_pair`` sharing one run cache, as ``run_stitch`` does; the predict-only part is ``predict``
of the same heads on the same test rows. CPU time of this process, 1 thread, rounds interleaved.

    python benchmarks/evaluation_cost.py [--anchors 250 500 1000 2000] [--test 445] [--seeds 3]

Runs with the package on PYTHONPATH, so pointing PYTHONPATH at an older checkout measures the code before a change.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--test", type=int, default=445)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from hf_bridges.stitching.config import HeadSpec, LatentSpec, MethodSpec, SelectSpec, TrainingSpec
    from hf_bridges.stitching.evaluation import evaluate_pair
    from hf_bridges.stitching.training import predict, train_head

    g = np.random.default_rng(0)
    n = args.train + args.test
    labels = g.integers(0, 5, n)
    a = (g.normal(size=(5, 384))[labels] + g.normal(size=(n, 384))).astype(np.float32)
    b = (a @ g.normal(size=(384, 384)) / 20 + 0.3 * g.normal(size=(n, 384))).astype(np.float32)
    test_a, test_b, y = a[args.train :], b[args.train :], labels[args.train :]
    methods = {
        "default": MethodSpec(name="default", kind="default"),
        "product+select": MethodSpec(
            name="product", projections=["cosine", "euclidean", "l1", "linf"], aggregation="concat", select=SelectSpec()
        ),
    }
    print(f"{args.test} test rows, {args.seeds} seeds per method, 1 thread; CPU seconds per head (A -> B)")
    print("| method | anchors | evaluate_pair | predict only | evaluation / predict |")
    print("|---|---|---|---|---|")
    for k in args.anchors:
        cache: dict = {}
        for name, method in methods.items():
            pairs = k * 3 if method.kind == "default" else k  # the alignment set: 2x the anchors
            anchors_a, anchors_b = a[:pairs].copy(), b[:pairs].copy()
            heads = [
                train_head(
                    method,
                    HeadSpec(),
                    TrainingSpec(num_epochs=1),
                    a[: args.train],
                    labels[: args.train],
                    anchors_a,
                    5,
                    seed,
                    feature_cache=cache,
                    relative_anchors=k,
                )
                for seed in range(args.seeds)
            ]
            evaluate, predict_only = 0.0, 0.0
            for head in heads:
                t = time.process_time()
                evaluate_pair(head, method, test_a, anchors_a, test_b, anchors_b, y, LatentSpec(), cache)
                evaluate += time.process_time() - t
                t = time.process_time()
                predict(head, test_b, anchors_b, feature_cache=cache)
                predict_only += time.process_time() - t
            evaluate, predict_only = evaluate / len(heads), predict_only / len(heads)
            print(f"| {name} | {k} | {evaluate:.3f} | {predict_only:.3f} | {evaluate / predict_only:.1f}x |")


if __name__ == "__main__":
    main()
