"""Head cost next to the encoder, timed interleaved, with memory counted once per allocation and the FLOP floor.

Encoders: a MiniLM-sized random BERT (hidden 384, 6 layers, 12 heads, intermediate 1536) and, when it is in the HF
cache, the real sentence-transformers/all-MiniLM-L6-v2. Batch 64 x 128 tokens, 1280 anchors, the four projections
(cosine, euclidean, l1, linf), mlp_sum, 5 classes, inference mode.

Each round runs the encoder forward on the batch, then the head forward on that batch's embeddings (then each
projection alone, and latentis's projections when it is installed); the ratio is taken per round, and the median and
the min-max / IQR over the rounds are printed, so a load change on a shared machine moves both sides of a ratio.

Memory: ``torch.profiler`` with ``profile_memory=True``; each allocation is counted once (``self_cpu_memory_usage``
of the allocating op, not the inclusive per-event sum that counts a tensor again in every parent op); the peak is
the maximum of the running sum of allocations and frees in time order.

FLOP floor: 2*B*k*D per GEMM-like projection (cosine, euclidean), 3*B*k*D for l1 / linf (sub, abs, add/max per
pair-dimension), 2*B*in*out per aggregation / classifier matrix; its time is those FLOPs at the GEMM throughput
measured in the same rounds (a (B, D) @ (D, k) matmul), so floor / encoder is what a perfect head would score.

    python benchmarks/head_vs_encoder.py [--rounds 15] [--threads 2] [--no-real]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from transformers import AutoModel, BertConfig, BertModel

from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead, get_projection, mean_pooling

PROJECTIONS = ["cosine", "euclidean", "l1", "linf"]
REAL = "sentence-transformers/all-MiniLM-L6-v2"


def clock(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), 0, max(values)]
    return (
        f"median {statistics.median(values):.4f}  IQR {q[0]:.4f}-{q[2]:.4f}  "
        f"min-max {min(values):.4f}-{max(values):.4f}"
    )


def memory_once(fn: Callable[[], object]) -> tuple[int, int]:
    """(peak live bytes, total bytes allocated) of fn, each allocation counted once (self, not inclusive)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    live = peak = total = 0
    for event in events:
        live += event.self_cpu_memory_usage
        total += max(event.self_cpu_memory_usage, 0)
        peak = max(peak, live)
    return peak, total


def head_flops(head: RelativeProductHead, batch: int, anchors: int, dim: int) -> float:
    pair = batch * anchors * dim
    flops = sum(2 * pair if name in ("cosine", "euclidean", "angular") else 3 * pair for name in head.projection_names)
    for param in head.parameters():
        if param.dim() >= 2:  # a (.., in, out) or (out, in) matrix applied to every sample
            flops += 2 * batch * param.numel()
    return float(flops)


def latentis_projections() -> dict[str, Callable]:
    try:
        from latentis.transform import projection as lp
    except Exception:  # not installed (or broken): no side-by-side column
        return {}
    return {
        "cosine": lambda x, a: lp.cosine_proj(x, anchors=a),
        "euclidean": lambda x, a: lp.euclidean_proj(x, anchors=a),
        "l1": lambda x, a: lp.l1_proj(x, anchors=a),
        "linf": lambda x, a: lp.lp_proj(x, anchors=a, p=float("inf")),
    }


def bench(label: str, encoder: torch.nn.Module, args) -> None:
    torch.manual_seed(0)
    vocab = encoder.config.vocab_size
    input_ids = torch.randint(1000, min(20000, vocab), (args.batch, args.seq))
    mask = torch.ones_like(input_ids)
    dim = encoder.config.hidden_size
    head = RelativeProductHead(HeadConfig.from_method("product-mlp_sum"), args.anchors, num_labels=5).eval()
    ours = {name: get_projection(name).fn for name in PROJECTIONS}
    theirs = latentis_projections()
    with torch.inference_mode():
        anchors = mean_pooling(encoder(input_ids=input_ids[:1].repeat(2, 1), attention_mask=mask[:2]), mask[:2])
        anchors = torch.randn(args.anchors, dim) * anchors.std() + anchors.mean()  # anchor-like scale
        x = mean_pooling(encoder(input_ids=input_ids, attention_mask=mask), mask)
        head(x, anchors)  # warm-up
        gemm_w = torch.randn(dim, args.anchors)
        ratio, enc_s, head_s, gemm_s = [], [], [], []
        proj = {n: [] for n in ours}
        lat = {n: [] for n in theirs}
        for _ in range(args.rounds):
            holder = {}
            enc_s.append(
                clock(
                    lambda: holder.setdefault(
                        "x", mean_pooling(encoder(input_ids=input_ids, attention_mask=mask), mask)
                    )
                )
            )
            x = holder["x"]
            head_s.append(clock(lambda: head(x, anchors)))
            ratio.append(head_s[-1] / enc_s[-1])
            for name, fn in ours.items():
                proj[name].append(clock(lambda f=fn: f(x, anchors)) / enc_s[-1])
            for name, fn in theirs.items():
                lat[name].append(clock(lambda f=fn: f(x, anchors)) / enc_s[-1])
            gemm_s.append(min(clock(lambda: x @ gemm_w) for _ in range(3)))
        head_peak, head_total = memory_once(lambda: head(x, anchors))
        l1_peak, _ = memory_once(lambda: ours["l1"](x, anchors))
        linf_peak, _ = memory_once(lambda: ours["linf"](x, anchors))

    gemm_flops = 2 * args.batch * dim * args.anchors / statistics.median(gemm_s)
    floor_s = head_flops(head, args.batch, args.anchors, dim) / gemm_flops
    print(
        f"\n== {label}: batch {args.batch} x {args.seq} tokens, {args.anchors} anchors, {', '.join(PROJECTIONS)}, "
        f"mlp_sum, {args.threads} threads, {args.rounds} interleaved rounds"
    )
    print(
        f"encoder forward {statistics.median(enc_s) * 1e3:.0f} ms, head {statistics.median(head_s) * 1e3:.1f} ms "
        f"(median)"
    )
    print(f"head / encoder: {spread(ratio)}   (target <= 0.01)")
    print(
        f"FLOP floor of the head: {head_flops(head, args.batch, args.anchors, dim) / 1e9:.2f} GFLOP at "
        f"{gemm_flops / 1e9:.0f} GFLOP/s (GEMM, same rounds) = {floor_s * 1e3:.1f} ms; "
        f"floor / encoder {floor_s / statistics.median(enc_s):.4f}; head / floor "
        f"{statistics.median(head_s) / floor_s:.1f}x"
    )
    for name in ours:
        line = f"  {name:<9} / encoder: {statistics.median(proj[name]):.4f}"
        if name in lat:
            line += (
                f"   latentis {statistics.median(lat[name]):.4f}  (latentis / ours "
                f"{statistics.median(lat[name]) / statistics.median(proj[name]):.2f}x)"
            )
        print(line)
    if not theirs:
        print("  (latentis not installed: no side-by-side column)")
    print(
        f"head memory, each allocation once: peak {head_peak / 2**20:.2f} MiB, allocated in all "
        f"{head_total / 2**20:.2f} MiB (a B x k x D float32 tensor would be "
        f"{args.batch * args.anchors * dim * 4 / 2**20:.0f} MiB)"
    )
    print(
        f"l1 peak {l1_peak / 2**20:.2f} MiB, linf peak {linf_peak / 2**20:.2f} MiB "
        f"(the (B, k) output alone is {args.batch * args.anchors * 4 / 2**20:.2f} MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--anchors", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-real", action="store_true", help="skip the real MiniLM-L6 even when it is cached")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random_encoder = BertModel(
        BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    ).eval()
    bench("MiniLM-sized random BERT", random_encoder, args)
    if not args.no_real:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(REAL, "config.json"), str):
            bench(REAL, AutoModel.from_pretrained(REAL).eval(), args)
        else:
            print(f"\n{REAL} is not in the HF cache: skipped (hf-bridges offline-seed places it)")


if __name__ == "__main__":
    main()
