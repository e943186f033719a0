"""Stitch embedding throughput next to ``SentenceTransformer.encode`` and onnxruntime (issue 21.1), in one run.

Three text sets from BBC News (short: titles / first sentences, ~20 tokens; mixed: titles or 1-4 first sentences;
long: articles cut at 128 tokens), the same model, max length and batch size for every path:

- ``stitch torch``: the ``hf_text`` embed called with the cache's window (``cache.WINDOW_ROWS`` rows: one sort, then
  batches of ``--batch``), the transformer forward in torch;
- ``ST``: ``SentenceTransformer.encode`` (sorts the whole list by character length, tokenises per batch);
- ``stitch onnx``: the same embed with ``backend: onnx`` (the forward in an onnxruntime session of the cached
  ``torch.onnx.export``, or of the ONNX file the repo ships);
- ``plain ORT``: a bare onnxruntime session on the same file: tokenised the same way (the whole list, padded), sorted
  by token count, one ``session.run`` per batch trimmed to its longest row, mean-pooled and normalised in numpy;
- with ``--with-32-row-calls``: the stitch torch embed called 32 rows at a time (what the stitch cache did before).

Each round runs every path on the same texts, the order rotating; the figures are the median per-round ratios
(CPU time of this process, 1 thread: the box is shared) with their [min, max] over rounds, and the max |diff| of the
embeddings: stitch torch vs ST, the onnx paths vs stitch torch.

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


def plain_session_embed(session, tokenizer, max_length: int, batch: int, normalize: bool):
    """A bare onnxruntime embed: numpy in, numpy out, nothing of hf_bridges in the loop."""
    names = [i.name for i in session.get_inputs()]
    output = "last_hidden_state" if "last_hidden_state" in [o.name for o in session.get_outputs()] else None

    def embed(texts: list[str]) -> np.ndarray:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        mask = encoded["attention_mask"]
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), 0), dtype=np.float32)
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            width = int(lengths[rows].max())
            feed = {n: np.ascontiguousarray(encoded[n][rows, :width]) for n in names}
            states = session.run([output] if output else None, feed)[0]
            weights = mask[rows, :width, None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            if normalize:
                pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            if out.shape[1] == 0:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        return out

    return embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=384, help="short and mixed texts each")
    parser.add_argument("--long-rows", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=["short", "mixed", "long"], choices=["short", "mixed", "long"])
    parser.add_argument("--with-32-row-calls", action="store_true", help="also time the stitch cache's old calls")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sentence_transformers import SentenceTransformer

    from hf_bridges.stitching.cache import WINDOW_ROWS
    from hf_bridges.stitching.config import EncoderSpec
    from hf_bridges.stitching.encoder_kinds import HFTextEncoder, text_settings
    from hf_bridges.stitching.onnx_backend import make_session

    sets = text_sets(args.rows, args.long_rows)
    st = SentenceTransformer(args.model, device="cpu")
    default_length = st.max_seq_length
    keys = ["torch", "st", "onnx", "plain", *(["old"] if args.with_32_row_calls else [])]
    labels = {"torch": "stitch torch", "st": "ST", "onnx": "stitch onnx", "plain": "plain ORT", "old": "32-row calls"}
    print(
        f"{args.model}, batch {args.batch}, 1 thread, {args.rounds} interleaved rounds, CPU-time ratios "
        f"(ST time / path time: > 1 is faster than SentenceTransformer.encode); window {WINDOW_ROWS} rows"
    )
    print(
        "| texts | rows | tokens median | "
        + " | ".join(f"ST / {labels[k]}" for k in keys if k != "st")
        + " | stitch onnx / plain ORT time | max abs diff: torch vs ST, onnx vs torch, plain vs torch | "
        "ST CPU s per round |"
    )
    print("|---|---|---|" + "---|" * (len(keys) - 1) + "---|---|---|")
    for name, texts in ((k, v) for k, v in sets.items() if k in args.sets):
        max_length = 128 if name == "long" else default_length
        st.max_seq_length = max_length
        spec = EncoderSpec(id=args.model, batch_size=args.batch, max_seq_length=max_length)
        embed = HFTextEncoder().load(spec)
        onnx_spec = EncoderSpec(id=args.model, batch_size=args.batch, max_seq_length=max_length, backend="onnx")
        embed_onnx = HFTextEncoder().load(onnx_spec)
        plain = plain_session_embed(
            make_session(embed_onnx.onnx_file), st.tokenizer, max_length, args.batch, text_settings(spec)["normalize"]
        )

        def windows(fn):
            return np.concatenate([fn({"text": texts[i : i + WINDOW_ROWS]}) for i in range(0, len(texts), WINDOW_ROWS)])

        paths = {
            "torch": lambda: windows(embed),
            "st": lambda: st.encode(texts, batch_size=args.batch, convert_to_numpy=True),
            "onnx": lambda: windows(embed_onnx),
            "plain": lambda: plain(texts),
            "old": lambda: np.concatenate(
                [embed({"text": texts[i : i + args.batch]}) for i in range(0, len(texts), args.batch)]
            ),
        }
        outputs = {k: paths[k]() for k in keys}  # also a warm-up of every path
        diffs = [
            float(np.abs(outputs[a] - outputs[b]).max())
            for a, b in (("torch", "st"), ("onnx", "torch"), ("plain", "torch"))
        ]
        times = {k: [] for k in keys}
        for r in range(args.rounds):
            order = keys[r % len(keys) :] + keys[: r % len(keys)]
            for key in order:
                t = time.process_time()
                paths[key]()
                times[key].append(time.process_time() - t)

        def ratio(num: str, den: str) -> str:
            values = [a / b for a, b in zip(times[num], times[den])]
            return f"{statistics.median(values):.2f}x [{min(values):.2f}, {max(values):.2f}]"

        lengths = [len(ids) for ids in st.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        print(
            f"| {name} | {len(texts)} | {int(np.median(lengths))} | "
            + " | ".join(ratio("st", k) for k in keys if k != "st")
            + f" | {ratio('onnx', 'plain')} | {diffs[0]:.1e}, {diffs[1]:.1e}, {diffs[2]:.1e} "
            f"| {statistics.median(times['st']):.2f} |"
        )


if __name__ == "__main__":
    main()
