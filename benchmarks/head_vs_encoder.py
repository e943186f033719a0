"""Head cost next to the encoder: ratio of head forward time to encoder forward time, and the head's peak memory.

MiniLM-sized encoder (6 layers, hidden 384, random weights), batch 64 x 128 tokens, 1280 anchors, all four
projections, mlp_sum aggregation, 5 classes. Prints ratios measured in this one run (machines here are noisy).

    python benchmarks/head_vs_encoder.py [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertConfig, BertModel

from hf_bridges.modeling.pooling import mean_pooling
from hf_bridges.modeling.projections import get_projection
from hf_bridges.modeling.head import RelativeProductHead


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def peak_cpu_bytes(fn) -> int:
    """Peak of the live CPU allocations made by fn, from the profiler's allocation/free events in order."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.events() if e.cpu_memory_usage != 0), key=lambda e: e.time_range.start
    )
    live = peak = 0
    for event in events:
        live += event.cpu_memory_usage
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--anchors", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    encoder = BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                   intermediate_size=1536)).eval()
    input_ids = torch.randint(1000, 20000, (args.batch, args.seq))
    mask = torch.ones_like(input_ids)
    anchors = torch.randn(args.anchors, 384)
    head = RelativeProductHead(args.anchors, ["cosine", "euclidean", "l1", "linf"], "mlp_sum", num_labels=5).eval()

    with torch.inference_mode():
        embeddings = mean_pooling(encoder(input_ids=input_ids, attention_mask=mask), mask)
        encoder_s = timed(lambda: encoder(input_ids=input_ids, attention_mask=mask), args.repeats)
        head_s = timed(lambda: head(embeddings, anchors), args.repeats)
        per_projection = {
            name: timed(lambda n=name: get_projection(n).fn(embeddings, anchors), args.repeats)
            for name in head.projection_names
        }
        head_peak = peak_cpu_bytes(lambda: head(embeddings, anchors))
        l1_peak = peak_cpu_bytes(lambda: get_projection("l1").fn(embeddings, anchors))
        linf_peak = peak_cpu_bytes(lambda: get_projection("linf").fn(embeddings, anchors))

    dense = args.batch * args.anchors * 384 * 4
    print(f"batch {args.batch} x {args.seq} tokens, {args.anchors} anchors, 4 projections, mlp_sum, "
          f"{args.threads} threads")
    print(f"head time / encoder forward time: {head_s / encoder_s:.4f}  (target <= 0.05)")
    for name, seconds in per_projection.items():
        print(f"  {name:<9} / encoder: {seconds / encoder_s:.4f}")
    print(f"head peak extra memory: {head_peak / 2**20:.1f} MiB "
          f"(a batch x anchors x hidden float32 tensor would be {dense / 2**20:.1f} MiB)")
    print(f"l1 peak: {l1_peak / 2**20:.2f} MiB, linf peak: {linf_peak / 2**20:.2f} MiB "
          f"(output alone is {args.batch * args.anchors * 4 / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
