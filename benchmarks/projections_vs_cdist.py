"""The l1 / linf / euclidean projections vs torch.cdist, forward and backward, timed interleaved.

hf_bridges.modeling.pairwise (l1, linf: chunked broadcast kernel) and the GEMM euclidean projection against
torch.cdist at B=64, k=1280, D=384 by default (plus other shapes with --shapes). Run with OMP_NUM_THREADS=1 on a
shared machine: with oversubscribed cores the kernel's many short parallel regions wait on descheduled threads.

Each round times baseline and candidate back to back (order alternating per round), each as the min of ``--reps``
calls; the per-round ratio is t_cdist / t_candidate (>1 = candidate faster). Prints median and [min, max] of ratios.

    OMP_NUM_THREADS=1 python benchmarks/projections_vs_cdist.py [--rounds 9] [--reps 3] [--shapes 64x1280x384,1x1280x384,...] [--chunks 262144,...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from hf_bridges.modeling import pairwise
from hf_bridges.modeling.head import euclidean as _hf_euclidean


def _timers(fn: Callable, x: torch.Tensor, a: torch.Tensor, g: torch.Tensor) -> dict[str, Callable[[], float]]:
    xr, ar = x.detach().requires_grad_(), a.detach().requires_grad_()

    def fwd() -> float:
        with torch.no_grad():
            t = time.perf_counter()
            fn(x, a)
            return time.perf_counter() - t

    def bwd() -> float:
        out = fn(xr, ar)
        t = time.perf_counter()
        torch.autograd.grad(out, (xr, ar), g)
        return time.perf_counter() - t

    def fwdbwd() -> float:
        t = time.perf_counter()
        out = fn(xr, ar)
        torch.autograd.grad(out, (xr, ar), g)
        return time.perf_counter() - t

    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwdbwd}


def interleaved(
    base: Callable[[], float], cand: Callable[[], float], rounds: int, reps: int
) -> tuple[float, float, float, float, float]:
    base(), cand()  # warm-up
    ratios, tb, tc = [], [], []
    for r in range(rounds):
        order = (base, cand) if r % 2 == 0 else (cand, base)
        res = {}
        for f in order:
            res[f] = min(f() for _ in range(reps))
        tb.append(res[base]), tc.append(res[cand])
        ratios.append(res[base] / res[cand])
    return statistics.median(ratios), min(ratios), max(ratios), statistics.median(tb) * 1e3, statistics.median(tc) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shapes", default="64x1280x384")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--metrics", default="fwd,bwd,fwd+bwd")
    ap.add_argument("--dists", default="l1,linf,euclidean")
    ap.add_argument("--chunks", default="", help="comma list of chunk_bytes to sweep (l1/linf at each shape)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, dtype {dtype}, rounds {args.rounds} x reps {args.reps}"
    )
    print("ratio = t_cdist / t_candidate (median [min, max] over rounds); times are medians in ms")
    for shape in args.shapes.split(","):
        B, k, D = map(int, shape.split("x"))
        x, a = torch.randn(B, D, dtype=dtype), torch.randn(k, D, dtype=dtype)
        g = torch.randn(B, k, dtype=dtype)
        cands: list[tuple[str, Callable, Callable]] = []
        for dist in args.dists.split(","):
            if dist == "euclidean":
                cands.append(("euclidean(GEMM)", lambda u, v: torch.cdist(u, v, p=2.0), _hf_euclidean))
                continue
            p = 1.0 if dist == "l1" else float("inf")
            f = pairwise.l1_distance if dist == "l1" else pairwise.linf_distance
            chunks = [None] + [int(c) for c in args.chunks.split(",") if c]
            for cb in chunks:
                name = dist if cb is None else f"{dist}@{cb // 1024}KiB"
                cands.append((name, lambda u, v, p=p: torch.cdist(u, v, p=p), lambda u, v, f=f, cb=cb: f(u, v, cb)))
        for name, base_fn, cand_fn in cands:
            tb_all, tc_all = _timers(base_fn, x, a, g), _timers(cand_fn, x, a, g)
            for m in args.metrics.split(","):
                med, lo, hi, tb, tc = interleaved(tb_all[m], tc_all[m], args.rounds, args.reps)
                print(
                    f"B={B:<4d} k={k} D={D:<4d} {name:16s} {m:8s} ratio {med:6.2f}x [{lo:5.2f}, {hi:5.2f}]"
                    f"  cdist {tb:8.2f} ms  cand {tc:8.2f} ms",
                    flush=True,
                )


if __name__ == "__main__":
    main()
