"""One index, two query sets: how close any label-free expected retention can come to the measured one.

The index bridge's expected retention (``hf_bridges/retrieval/estimate.py``) is computed when the bridge is fitted:
it sees the paired texts and both encoders' vectors of them, never the queries users will send nor which document
answers each. Here one index (the same documents), the same paired texts and so the same fitted bridge (one expected
retention per side) serve two known-item query sets over those documents:

* ``bbc``: a BBC News article's body after its first sentence is the document; the queries are the titles, or the
  body's first sentences (``lead``);
* ``rt``: a Rotten Tomatoes plot summary's middle sentences are the document; the queries are its first sentences,
  or its last ones.

Items and paired texts are those of ``benchmarks/retrieval_bridge.py`` (its first 400 evaluation items, its pool),
so the pool's vectors come from that benchmark's cache. Every estimator that reads what the bridge reads returns one
number for both query sets. Where their measured retentions (Recall@10 over full re-embedding's, per query set)
differ by more than 6 points, it misses at least one of them by more than 3, whatever it computes: the table counts
those cells and prints the bridge's own estimate next to both.

    python benchmarks/retrieval_estimate_limit.py --json docs/results/retrieval_estimate_limit.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("retrieval_bridge", Path(__file__).with_name("retrieval_bridge.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def query_sets(name: str, docs: int, pool: int) -> dict:
    """The benchmark's task, its documents cut so that two query sets can point at each of them."""
    task = bench.TASKS[name](docs, pool)
    first, second, corpus = [], [], []
    for query, document in zip(task["queries"], task["corpus"]):
        sentences = bench.SENTENCE.split(document)
        if name == "bbc" and len(sentences) >= 2:  # title / the body's first sentence -> the rest of the body
            first.append(query), second.append(sentences[0]), corpus.append(" ".join(sentences[1:]))
        elif name == "rt" and len(sentences) >= 2:  # first sentence / last sentence -> the sentences between
            first.append(query), second.append(sentences[-1]), corpus.append(" ".join(sentences[:-1]))
    labels = {"bbc": ("title", "lead"), "rt": ("first sentence", "last sentence")}[name]
    return {"queries": {labels[0]: first, labels[1]: second}, "corpus": corpus, "pool": task["pool"]}


def embed(task: dict, key: str, cache: Path, max_seq_length: int, models: dict) -> dict:
    def vectors(texts: list[str]) -> np.ndarray:
        return bench.embed_cached(key, texts, cache, max_seq_length, models)

    return {
        "queries": {label: vectors(texts) for label, texts in task["queries"].items()},
        "corpus": vectors(task["corpus"]),
        "pool": vectors(task["pool"]),
    }


def cells(emb: dict, old: str, new: str, counts: list[int]) -> list[dict]:
    from hf_bridges.retrieval import IndexBridge, retrieval_metrics

    def recall(q: np.ndarray, d: np.ndarray) -> float:
        return retrieval_metrics(q, d)["recall@10"]

    d_old, d_new = emb[old]["corpus"], emb[new]["corpus"]
    rows = []
    for n in counts:
        if n > min(len(emb[old]["pool"]), len(emb[new]["pool"])):
            continue
        bridge = IndexBridge.fit_embeddings(emb[old]["pool"][:n], emb[new]["pool"][:n])
        migrated = bridge.migrate(d_old)
        for side, estimate in bridge.retention.items():
            measured = {}
            for label, q_new in emb[new]["queries"].items():
                ceiling = recall(q_new, d_new)
                hits = recall(bridge.map_queries(q_new), d_old) if side == "query" else recall(q_new, migrated)
                measured[label] = hits / ceiling
            values = list(measured.values())
            rows.append(
                {
                    "old": old,
                    "new": new,
                    "pairs": n,
                    "side": side,
                    "expected": estimate.estimate,
                    "measured": measured,
                    "spread": max(values) - min(values),  # any single number misses one by at least half of it
                    "miss": max(abs(estimate.estimate - v) for v in values),
                }
            )
    return rows


def report(task: str, rows: list[dict]) -> str:
    labels = list(rows[0]["measured"])
    lines = [
        f"\n{task}: index <- encoder, side | pairs | measured retention ({' / '.join(labels)}) | spread | "
        "the bridge's estimate (worst miss)",
    ]
    for r in rows:
        measured = " / ".join(f"{r['measured'][label]:.3f}" for label in labels)
        lines.append(
            f"{r['old']} <- {r['new']}, {r['side']} | {r['pairs']} | {measured} | {100 * r['spread']:.1f} | "
            f"{r['expected']:.3f} ({100 * r['miss']:.1f})"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    spreads = np.array([r["spread"] for r in rows])
    return {
        "cells": len(rows),
        "cells where any label-free estimate misses one query set by > 3 points (spread > 6)": int(
            (spreads > 0.06).sum()
        ),
        "mean spread (points)": round(100 * float(spreads.mean()), 1),
        "largest spread (points)": round(100 * float(spreads.max()), 1),
        "the bridge's estimate within 3 points of both query sets": int(sum(r["miss"] <= 0.03 for r in rows)),
    }


def main(args) -> None:
    counts = [int(c) for c in args.pairs_sweep.split(",")]
    out: dict = {"rows": [], "summary": {}}
    for name in args.tasks.split(","):
        task = query_sets(name, args.docs, args.pool)
        keys = sorted({k for pair in args.pairs.split(",") for k in pair.split("-")})
        models: dict = {}
        emb = {key: embed(task, key, Path(args.cache) / name, args.max_seq_length, models) for key in keys}
        rows = []
        for pair in args.pairs.split(","):
            old, new = pair.split("-")
            rows += cells(emb, old, new, counts)
        for r in rows:
            r["task"] = name
        print(report(name, rows), flush=True)
        print(json.dumps(summary(rows), indent=1), flush=True)
        out["summary"][name] = summary(rows)
        out["rows"] += rows
    out["summary"]["all"] = summary(out["rows"])
    print(json.dumps(out["summary"]["all"], indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--tasks", default="bbc,rt")
    parser.add_argument("--pairs", default="L6-L3,L3-L6,L6-m2v,m2v-L6", help="old-new encoder pairs")
    parser.add_argument("--pairs-sweep", default="250,500,1000,2000")
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--json", help="write every row here")
    main(parser.parse_args())
