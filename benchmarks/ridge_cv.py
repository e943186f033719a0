"""The attach-time ridge alpha choice: one eigendecomposition per fold for every alpha vs one solve per alpha.

``translation.fit_affine`` picks its alpha by 5-fold held-out residual over ``RIDGE_ALPHAS`` (6 values). The
per-alpha path (``kfold_residual`` of ``fit_affine(alpha=a)``: 30 fits) was what attaches ran until round 5;
``ridge_cv_residuals`` gets the same residuals from 5 eigendecompositions. Both run interleaved on the same
synthetic pairs (an alignment set makes the pair count grow: 1,500 for text, 1,000 for a 1280-d CNN), one thread;
prints the median time of each, the ratio, and the largest residual difference (float64 rounding only).

    python benchmarks/ridge_cv.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_bridges.heads.translation import RIDGE_ALPHAS, fit_affine, kfold_residual, ridge_cv_residuals

SHAPES = [(384, 500), (384, 1500), (768, 1500), (1280, 300), (1280, 1000)]  # (width, pairs)


def per_alpha(source: torch.Tensor, target: torch.Tensor) -> list[float]:
    return [kfold_residual(source, target, lambda s, t, a=a: fit_affine(s, t, alpha=a)) for a in RIDGE_ALPHAS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| width | pairs | per alpha (s) | one eigh per fold (s) | ratio | max residual difference |")
    print("|---|---|---|---|---|---|")
    for width, pairs in SHAPES:
        g = torch.Generator().manual_seed(width + pairs)
        target = torch.randn(pairs, width, generator=g, dtype=torch.float64)
        source = target @ torch.randn(width, width, generator=g, dtype=torch.float64) * 0.1
        source += torch.randn(pairs, width, generator=g, dtype=torch.float64)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.rounds):
            order = [("old", per_alpha), ("new", lambda s, t: ridge_cv_residuals(s, t, RIDGE_ALPHAS))]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                result = fn(source, target)
                times[name].append(time.perf_counter() - t0)
                if name == "old":
                    old = result
                else:
                    new = result
        old_s, new_s = statistics.median(times["old"]), statistics.median(times["new"])
        diff = max(abs(a - b) for a, b in zip(old, new))
        print(f"| {width} | {pairs} | {old_s:.3f} | {new_s:.3f} | {old_s / new_s:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
