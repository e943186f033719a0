"""Are issue 24's misses real? Per-query tests of the stored retrieval benchmark cells.

For every (task, old, new, pairs, side) cell of the six stored benchmark runs (``retrieval_{bbc,rt}_{minilm,mpnet,
m2v}.json``) the map the default kept is refitted on the same pairs (the kept candidate, read off the recorded
scores: ``candidate_rows`` reproduces the bridge's figures), and so are aecp's maps. Per query, a Recall@10 hit or
miss; then:

* bridge vs aecp's best map: the exact McNemar test on the queries only one of them finds (two-sided p);
* the bridge's retention (its Recall@10 over full re-embedding's) with a paired bootstrap 95 % interval over the
  queries (2,000 resamples, seed 0): whether a cell's shortfall from a target is larger than its 400 queries resolve.

    python benchmarks/retrieval_significance.py --json docs/results/retrieval_significance.json   # ~15 min, 1 thread
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrieval_bridge import TASKS, aecp_maps, embed_task
from retrieval_selection import RESULTS

RESAMPLES = 2000


def hits(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> np.ndarray:
    """Per query, whether its own document (same index) is in the top ``k``."""
    from hf_bridges.retrieval.metrics import ranks_of

    return ranks_of(queries, corpus, np.arange(len(queries))) <= k


def kept_kind(row: dict) -> str:
    """The candidate the default kept: the best recorded score, ties to the earlier (``bridge._fit_side``)."""
    from hf_bridges.retrieval.bridge import CANDIDATES

    scores = row["candidates"]
    return max(CANDIDATES, key=lambda c: (scores[c], -CANDIDATES.index(c)))


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p of paired hit vectors."""
    from scipy.stats import binomtest

    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def retention_interval(bridge: np.ndarray, ceiling: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap 95 % interval of ``mean(bridge) / mean(ceiling)`` over the queries."""
    rng = np.random.default_rng(seed)
    n = len(bridge)
    ratios = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        idx = rng.integers(0, n, n)
        ratios[i] = bridge[idx].mean() / max(ceiling[idx].mean(), 1e-12)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return float(low), float(high)


def test_cells(task: str, family: str, cache: Path) -> list[dict]:
    from hf_bridges.retrieval.maps import fit_candidate

    stored = json.loads((RESULTS / f"retrieval_{task}_{family}.json").read_text())["rows"]
    bridges = [r for r in stored if r["system"] == "bridge (best)"]
    keys = sorted({r["old"] for r in bridges} | {r["new"] for r in bridges})
    emb = embed_task(TASKS[task](400, 2000), keys, cache / task, 128)
    out = []
    for row in bridges:
        old, new, n, side = row["old"], row["new"], row["pairs"], row["side"]
        m = min(len(emb[old]["corpus"]), len(emb[new]["corpus"]))
        q_new, d_new, d_old = emb[new]["queries"][:m], emb[new]["corpus"][:m], emb[old]["corpus"][:m]
        p_old, p_new = emb[old]["pool"][:n], emb[new]["pool"][:n]
        unit = {key: bool(np.allclose(np.linalg.norm(emb[key]["pool"][:50], axis=1), 1, atol=1e-3)) for key in keys}
        kind = kept_kind(row)
        ceiling = hits(q_new, d_new)
        if side == "query":
            bridge = hits(fit_candidate(p_new, p_old, unit[old], kind)(q_new), d_old)
            aecp = {name: hits(f.transform(q_new), d_old) for name, f in aecp_maps(p_new, p_old).items()}
        else:
            bridge = hits(q_new, fit_candidate(p_old, p_new, unit[new], kind)(d_old))
            aecp = {name: hits(q_new, f.transform(d_old)) for name, f in aecp_maps(p_old, p_new).items()}
        if abs(bridge.mean() - row["recall@10"]) > 1e-9:
            raise RuntimeError(f"{task} {old}<-{new} {n} {side}: refitted {kind} gives {bridge.mean()}, stored {row}")
        best = max(aecp, key=lambda name: aecp[name].mean())
        low, high = retention_interval(bridge.astype(float), ceiling.astype(float))
        out.append(
            {
                "task": task,
                "old": old,
                "new": new,
                "pairs": n,
                "side": side,
                "kept": kind,
                "retention": float(bridge.mean() / ceiling.mean()),
                "retention_low": low,
                "retention_high": high,
                "aecp": best,
                "vs_aecp": float((bridge.mean() - aecp[best].mean()) / ceiling.mean()),
                "only_bridge": int((bridge & ~aecp[best]).sum()),
                "only_aecp": int((~bridge & aecp[best]).sum()),
                "mcnemar_p": mcnemar(bridge, aecp[best]),
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def summary(rows: list[dict]) -> dict:
    below = [r for r in rows if r["vs_aecp"] < -1e-9]
    issue = [r for r in rows if (r["task"], r["old"], r["new"], r["pairs"]) == ("bbc", "L6", "mpnet", 2000)]
    return {
        "cells": len(rows),
        "below_aecp": len(below),
        "below_aecp_p_lt_0.05": sum(r["mcnemar_p"] < 0.05 for r in below),
        "above_aecp_p_lt_0.05": sum(r["mcnemar_p"] < 0.05 for r in rows if r["vs_aecp"] > 1e-9),
        "smallest_p_below": min((r["mcnemar_p"] for r in below), default=None),
        "issue_cell": {r["side"]: [r["retention"], r["retention_low"], r["retention_high"]] for r in issue},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="bbc,rt")
    parser.add_argument("--families", default="minilm,mpnet,m2v")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--json", help="write every cell's tests and the summary here")
    args = parser.parse_args()
    rows = [
        r for t in args.tasks.split(",") for f in args.families.split(",") for r in test_cells(t, f, Path(args.cache))
    ]
    result = {"rows": rows, "summary": summary(rows)}
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        tmp = Path(f"{args.json}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, args.json)
