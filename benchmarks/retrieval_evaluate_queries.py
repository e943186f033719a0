"""How many labelled queries does a measured retention need? ``IndexBridge.evaluate``'s 95 % interval by query count.

A fitted default bridge (``IndexBridge.fit_embeddings``, ``translation="best"``) on the first ``--pairs`` paired
texts of ``benchmarks/retrieval_bridge.py``'s pool; its labelled known-item task (400 queries, 400 documents) as the
user's own labelled queries. For each count ``n`` of labelled queries, ``--draws`` random sets of ``n`` queries
search all 400 documents (the other queries' documents are the distractors) and ``evaluate_embeddings`` measures
both sides' retention with its paired percentile bootstrap (1,000 resamples): the interval's half-width (mean and
largest over the draws) and how far the draws' point estimates fall from the 400-query one. Vectors come from that
benchmark's cache (``--embed-only`` there first); nothing is embedded here when they are cached.

    python benchmarks/retrieval_evaluate_queries.py --tasks bbc,rt --encoders L6-mpnet,L6-L3 \
        --json docs/results/retrieval_evaluate_queries.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrieval_bridge import ENCODERS, TASKS, embed_task


def run(task_name: str, old: str, new: str, args) -> list[dict]:
    from hf_bridges.retrieval import IndexBridge

    task = TASKS[task_name](args.docs, args.pool)
    emb = embed_task(task, [old, new], Path(args.cache) / task_name, args.max_seq_length)
    bridge = IndexBridge.fit_embeddings(
        emb[old]["pool"][: args.pairs],
        emb[new]["pool"][: args.pairs],
        old_encoder={"name_or_path": ENCODERS[old]},
        new_encoder={"name_or_path": ENCODERS[new]},
    )
    q_new, d_new, d_old = emb[new]["queries"], emb[new]["corpus"], emb[old]["corpus"]
    everything = bridge.evaluate_embeddings(q_new, d_new, d_old).retention
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in (int(c) for c in args.queries.split(",")):
        draws = [np.arange(len(q_new))] if n >= len(q_new) else [rng.choice(len(q_new), n, replace=False)]
        draws += [rng.choice(len(q_new), n, replace=False) for _ in range(args.draws - 1) if n < len(q_new)]
        measured = [bridge.evaluate_embeddings(q_new[i], d_new, d_old, i, seed=s) for s, i in enumerate(draws)]
        for side in ("query", "migrate"):
            half = np.array([(m.retention[side]["high"] - m.retention[side]["low"]) / 2 for m in measured])
            miss = np.array([abs(m.retention[side]["estimate"] - everything[side]["estimate"]) for m in measured])
            rows.append(
                {
                    "task": task_name,
                    "old": old,
                    "new": new,
                    "pairs": args.pairs,
                    "side": side,
                    "queries": n,
                    "draws": len(draws),
                    "half_width_mean": float(half.mean()),
                    "half_width_max": float(half.max()),
                    "miss_vs_400_mean": float(miss.mean()),
                    "retention_400": everything[side]["estimate"],
                    "expected": bridge.retention[side].estimate,
                    "ceiling_b_recall": measured[0].metrics["reembed"]["recall@10"],
                }
            )
            r = rows[-1]
            print(
                f"{task_name} {old} index, {new} queries, {side:7} n={n:3}: half-width {r['half_width_mean']:.3f} "
                f"(max {r['half_width_max']:.3f}), |draw - 400| {r['miss_vs_400_mean']:.3f}; "
                f"retention at 400 {r['retention_400']:.3f}, expected {r['expected']:.3f}",
                flush=True,
            )
    return rows


def main(args) -> None:
    rows = []
    for task_name in args.tasks.split(","):
        for pair in args.encoders.split(","):
            old, new = pair.split("-")
            rows += run(task_name, old, new, args)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("cache", "json")}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": settings, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--tasks", default="bbc")
    parser.add_argument("--encoders", default="L6-mpnet", help="old-new encoder pairs (the index holds old vectors)")
    parser.add_argument("--pairs", type=int, default=1000, help="paired texts the bridge is fitted on")
    parser.add_argument("--queries", default="50,100,200,400", help="labelled query counts")
    parser.add_argument("--draws", type=int, default=20, help="random query sets per count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--json")
    main(parser.parse_args())
