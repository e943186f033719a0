"""Stitch embedding throughput next to ``SentenceTransformer.encode`` (issue 21.1), in one run.

Three text sets from BBC News (short: titles / first sentences, ~20 tokens; mixed: titles or 1-4 first sentences;
long: articles cut at 128 tokens), the same model, max length and batch size for every path:

- ``stitch, 32-row calls``: the ``hf_text`` embed called 32 rows at a time (what the stitch cache did before: the
  length sort only ever saw 32 rows);
- ``stitch, windows``: the same embed called with the cache's window (``cache.WINDOW_ROWS`` rows: one sort, then
  batches of ``--batch``);
- ``SentenceTransformer.encode`` (sorts the whole list by character length, tokenises per batch).

Each round runs every path on the same texts, the order rotating; the figures are the median per-round ratios
(CPU time of this process, 1 thread: the box is shared) and the padded tokens each path computes per real token.
The embeddings of every path are compared with sentence-transformers'.

    python benchmarks/embedding_throughput.py [--rows 384] [--long-rows 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch


def text_sets(rows: int, long_rows: int, seed: int = 0) -> dict[str, list[str]]:
    from hf_bridges.data import load_labelled_dataset

    rng = random.Random(seed)
    articles = list(load_labelled_dataset("bbc_news")["train"]["text"])
    rng.shuffle(articles)
    short, mixed = [], []
    for article in articles[:rows]:
        lines = [line for line in article.splitlines() if line.strip()]
        sentences = " ".join(lines[1:]).split(". ")
        short.append(lines[0] if rng.random() < 0.5 else sentences[0])
        mixed.append(lines[0] if rng.random() < 0.5 else ". ".join(sentences[: rng.randint(1, 4)]))
    return {"short": short, "mixed": mixed, "long": articles[rows : rows + long_rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=384, help="short and mixed texts each")
    parser.add_argument("--long-rows", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=["short", "mixed", "long"], choices=["short", "mixed", "long"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sentence_transformers import SentenceTransformer

    from hf_bridges.stitching.cache import WINDOW_ROWS
    from hf_bridges.stitching.config import EncoderSpec
    from hf_bridges.stitching.encoder_kinds import HFTextEncoder

    sets = text_sets(args.rows, args.long_rows)
    st = SentenceTransformer(args.model, device="cpu")
    default_length = st.max_seq_length
    print(
        f"{args.model}, batch {args.batch}, 1 thread, {args.rounds} interleaved rounds, CPU-time ratios "
        f"(> 1: the stitch path is faster); window {WINDOW_ROWS} rows"
    )
    print(
        "| texts | rows | tokens median | ST time / stitch 32-row time | ST time / stitch windows time | padded tokens per real: "
        "32-row, windows | max abs diff vs ST |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, texts in ((k, v) for k, v in sets.items() if k in args.sets):
        max_length = 128 if name == "long" else default_length
        st.max_seq_length = max_length
        spec = EncoderSpec(id=args.model, batch_size=args.batch, max_seq_length=max_length)
        embed = HFTextEncoder().load(spec)
        lengths = np.array(
            [len(ids) for ids in st.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        )

        def old_path():
            return np.concatenate(
                [embed({"text": texts[i : i + args.batch]}) for i in range(0, len(texts), args.batch)]
            )

        def new_path():
            return np.concatenate(
                [embed({"text": texts[i : i + WINDOW_ROWS]}) for i in range(0, len(texts), WINDOW_ROWS)]
            )

        def st_path():
            return st.encode(texts, batch_size=args.batch, convert_to_numpy=True)

        paths = {"old": old_path, "new": new_path, "st": st_path}
        reference = st_path()
        diffs = {k: float(np.abs(fn() - reference).max()) for k, fn in (("old", old_path), ("new", new_path))}
        times = {k: [] for k in paths}
        for r in range(args.rounds):
            order = list(paths)
            order = order[r % 3 :] + order[: r % 3]
            for key in order:
                t = time.process_time()
                paths[key]()
                times[key].append(time.process_time() - t)
        ratio = {k: statistics.median(s / o for s, o in zip(times["st"], times[k])) for k in ("old", "new")}
        spread = {
            k: (min(s / o for s, o in zip(times["st"], times[k])), max(s / o for s, o in zip(times["st"], times[k])))
            for k in ("old", "new")
        }

        def padded(window: int) -> float:
            total = 0
            for i in range(0, len(lengths), window):
                part = np.sort(lengths[i : i + window])[::-1]
                total += sum(
                    int(part[b : b + args.batch].max()) * len(part[b : b + args.batch])
                    for b in range(0, len(part), args.batch)
                )
            return total / lengths.sum()

        print(
            f"| {name} | {len(texts)} | {int(np.median(lengths))} | {ratio['old']:.2f}x "
            f"[{spread['old'][0]:.2f}, {spread['old'][1]:.2f}] | **{ratio['new']:.2f}x** "
            f"[{spread['new'][0]:.2f}, {spread['new'][1]:.2f}] | {padded(args.batch):.2f}, {padded(WINDOW_ROWS):.2f} "
            f"| {diffs['old']:.1e}, {diffs['new']:.1e} |"
        )
    print(f"ST median CPU seconds per round, last set: {statistics.median(times['st']):.2f}")


if __name__ == "__main__":
    main()
