"""Can a user choose the index bridge's map on a few labelled queries? A split-half check on the issue's pair.

BBC known-item search (``benchmarks/retrieval_bridge.py``'s task and cached vectors), an all-MiniLM-L6-v2 index,
all-mpnet-base-v2 queries: bridges fitted with ``translation=`` ``best`` / ``contrastive`` / ``rotation`` /
``blend 0.75`` on the first 500 / 1,000 / 2,000 paired texts, each measured (``IndexBridge.evaluate_embeddings``,
query side) on the first and on the last 200 of the 400 labelled titles. The map chosen on one half is scored on the
other: what choosing on 200 labelled queries is worth (docs/retrieval.md, Measuring on your own queries).

    python benchmarks/retrieval_choose_map.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrieval_bridge import TASKS, embed_task

MAPS = ("best", "contrastive", "rotation", "blend 0.75")


def main() -> None:
    from hf_bridges.retrieval import IndexBridge

    cache = Path(os.path.expanduser("~/.cache/hf_bridges/retrieval_bench")) / "bbc"
    emb = embed_task(TASKS["bbc"](400, 2000), ["L6", "mpnet"], cache, 128)
    old, new = emb["L6"]["pool"], emb["mpnet"]["pool"]
    queries, d_new, d_old = emb["mpnet"]["queries"], emb["mpnet"]["corpus"], emb["L6"]["corpus"]
    halves = (np.arange(200), np.arange(200, 400))
    for n in (500, 1000, 2000):
        measured = {}
        for name in MAPS:
            bridge = IndexBridge.fit_embeddings(old[:n], new[:n], translation=name, estimate=name == "best")
            measured[name] = [
                bridge.evaluate_embeddings(queries[h], d_new, d_old, h).retention["query"]["estimate"] for h in halves
            ] + [bridge.evaluate_embeddings(queries, d_new, d_old).retention["query"]["estimate"]]
        table = {name: [round(x, 3) for x in v] for name, v in measured.items()}
        picks = [max(MAPS, key=lambda m, i=i: measured[m][i]) for i in (0, 1)]
        print(f"{n} pairs (first half / last half / all 400): {table}")
        print(
            f"  chosen on the first half: {picks[0]}, {measured[picks[0]][1]:.3f} on the last; chosen on the last "
            f"half: {picks[1]}, {measured[picks[1]][0]:.3f} on the first",
            flush=True,
        )


if __name__ == "__main__":
    main()
