"""Which label-free score should pick the index bridge's map? Candidate selection rules, scored on the same
cross-fitted paired texts as ``translation="best"`` and judged by the labelled retention of every candidate map.

The rules below were fixed before any of their results were read (issue 24, round 12):

* ``both@10`` (the default): the share of held-out texts whose pseudo-relevant text (the nearest other one under the
  sum of both encoders' cosines) is in the map's top 10 of a 200-text chunk;
* ``both-mrr``: the same pseudo-relevance, scored by its reciprocal rank (finer than a top-10 hit: at 2,000 pairs
  most candidates hit nearly every text);
* ``self-mrr``: each held-out text's *own* pair (its vector under the other encoder) as the relevant one, scored by
  reciprocal rank: the known-item structure of a retrieval task (one text, two views), which belongs to neither
  encoder's neighbourhoods;
* ``both@10+self-mrr``: the sum of the default's score and ``self-mrr``.

A rule replaces the default only if, over every (cell, side) of the candidate files, its mean regret (labelled
retention lost against the best candidate) is lower, it keeps at least as many cells at or above aecp's best map,
and its worst regret is at most 2 points above the default's. The cross-fitted mapped vectors are those of
``bridge._fit_side`` (same folds, seed and chunks), so ``both@10`` reproduces the default's choice.

    python benchmarks/retrieval_selection.py --tasks bbc --json docs/results/retrieval_selection_bbc.json  # and rt (~15 min each)
    python benchmarks/retrieval_selection.py --analyse docs/results/retrieval_selection_bbc.json,docs/results/retrieval_selection_rt.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrieval_bridge import TASKS, embed_task

RULES = ("both@10", "both-mrr", "self-mrr", "both@10+self-mrr")
DIRECTIONS = "L6-L3,L3-L6,L6-mpnet,mpnet-L6,L6-m2v,m2v-L6,L3-m2v,m2v-L3"
RESULTS = Path(__file__).parent.parent / "docs" / "results"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ranks(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1-based rank of ``target[i]`` in row ``i`` of ``scores`` (ties counted against it)."""
    return (scores >= scores[np.arange(len(target)), target][:, None]).sum(1)


def rule_scores(mapped, source, target, side, k=10, seed=0, corpus=200) -> dict[str, float]:
    """Every rule's score of one candidate's out-of-fold ``mapped`` rows (the chunks of ``hits_of_mapped``)."""
    n = source.shape[0]
    rng = np.random.default_rng(seed)
    rng.permutation(n)
    new_vectors, old_vectors = (source, target) if side == "query" else (target, source)
    both_hit, both_rr, self_rr = np.zeros(n), np.zeros(n), np.zeros(n)
    for rows in np.array_split(rng.permutation(n), max(1, n // max(corpus, 2 * k))):
        new, old = _unit(new_vectors[rows]), _unit(old_vectors[rows])
        eye = np.eye(len(rows), dtype=bool)
        pseudo = np.where(eye, -np.inf, new @ new.T + old @ old.T).argmax(1)
        sys_q, sys_d = (mapped[rows], old) if side == "query" else (new, _unit(mapped[rows]))
        sims = _unit(sys_q) @ _unit(sys_d).T
        others = np.where(eye, -np.inf, sims)
        rank = _ranks(others, pseudo)
        both_hit[rows], both_rr[rows] = rank <= k, 1.0 / rank
        self_rr[rows] = 1.0 / _ranks(sims, np.arange(len(rows)))
    out = {"both@10": both_hit.mean(), "both-mrr": both_rr.mean(), "self-mrr": self_rr.mean()}
    out["both@10+self-mrr"] = out["both@10"] + out["self-mrr"]
    return {key: float(v) for key, v in out.items()}


def score_cells(task: str, directions: list[str], counts: list[int], cache: Path) -> list[dict]:
    from hf_bridges.retrieval.bridge import CANDIDATES
    from hf_bridges.retrieval.estimate import cross_fitted_mapped
    from hf_bridges.retrieval.maps import BLEND_MEMBERS, LinearMap, blend_weight

    data = TASKS[task](400, 2000)
    keys = sorted({k for d in directions for k in d.split("-")})
    emb = embed_task(data, keys, cache / task, 128, parts=("pool",))
    rows = []
    for direction in directions:
        old, new = direction.split("-")
        p_old, p_new = emb[old]["pool"], emb[new]["pool"]
        norm = {
            key: bool(np.allclose(np.linalg.norm(emb[key]["pool"][:50], axis=1), 1, atol=1e-3)) for key in (old, new)
        }
        for n in counts:
            for side, (src, tgt, tnorm) in {
                "query": (p_new[:n], p_old[:n], norm[old]),
                "migrate": (p_old[:n], p_new[:n], norm[new]),
            }.items():
                start = time.perf_counter()
                mapped = {}
                for kind in [c for c in CANDIDATES if blend_weight(c) is None]:

                    def fitter(s, t, kind=kind):
                        return LinearMap.fit(s, t, tnorm, kind, 5)

                    mapped[kind] = _unit(cross_fitted_mapped(src, tgt, fitter, k=10, folds=5, seed=0))
                for kind in CANDIDATES:
                    w = blend_weight(kind)
                    if w is not None:
                        mapped[kind] = _unit(w * mapped[BLEND_MEMBERS[0]] + (1 - w) * mapped[BLEND_MEMBERS[1]])
                scores = {c: rule_scores(mapped[c], src, tgt, side) for c in CANDIDATES}
                rows.append({"task": task, "old": old, "new": new, "pairs": n, "side": side, "scores": scores})
                print(f"{task} {old}<-{new} {n} {side}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def labelled(paths: list[Path]) -> tuple[dict, dict]:
    """(cell -> candidate -> labelled retention, cell -> aecp's best retention) from the stored benchmark runs."""
    cand, aecp = {}, {}
    for path in paths:
        for r in json.loads(path.read_text()).get("rows", []):
            if "system" not in r:
                continue
            cell = (r["task"], r["old"], r["new"], r.get("pairs"), r["side"])
            if r["system"].startswith("candidate "):
                cand.setdefault(cell, {})[r["system"][len("candidate ") :]] = r["retention"]
            elif r["system"].startswith("aecp"):
                aecp[cell] = max(aecp.get(cell, -1.0), r["retention"])
    return cand, aecp


def choose(scores: dict, rule: str, order: list[str]) -> str:
    return max(order, key=lambda c: (round(scores[c][rule], 12), -order.index(c)))


def analyse(paths: list[str]) -> dict:
    from hf_bridges.retrieval.bridge import CANDIDATES

    order = list(CANDIDATES)
    rows = [r for p in paths for r in json.loads(Path(p).read_text())["rows"]]
    cand, aecp = labelled(
        [p for p in sorted(RESULTS.glob("retrieval_*.json")) if not p.stem.endswith(("_200", "_limit"))]
    )
    out = {}
    for rule in (*RULES, "oracle"):
        regrets, above, picks = [], 0, {}
        for r in rows:
            cell = (r["task"], r["old"], r["new"], r["pairs"], r["side"])
            if cell not in cand or len(cand[cell]) < len(order):
                continue
            ret = cand[cell]
            kept = max(order, key=ret.__getitem__) if rule == "oracle" else choose(r["scores"], rule, order)
            picks[kept] = picks.get(kept, 0) + 1
            regrets.append(100 * (max(ret.values()) - ret[kept]))
            above += ret[kept] >= aecp[cell] - 1e-9
            if r["task"] == "bbc" and (r["old"], r["new"], r["pairs"]) == ("L6", "mpnet", 2000):
                out.setdefault("L6<-mpnet bbc 2000", {})[f"{rule} {r['side']}"] = [kept, round(ret[kept], 3)]
        out[rule] = {
            "cells": len(regrets),
            "regret_mean": round(float(np.mean(regrets)), 2),
            "regret_worst": round(float(np.max(regrets)), 1),
            "at_or_above_aecp": int(above),
            "kept": picks,
        }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="bbc,rt")
    parser.add_argument("--directions", default=DIRECTIONS)
    parser.add_argument("--counts", default="250,500,1000,2000")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--json", help="write the scores here")
    parser.add_argument("--analyse", help="comma-separated score files: the rules' regret and cells vs aecp")
    args = parser.parse_args()
    if args.analyse:
        print(json.dumps(analyse(args.analyse.split(",")), indent=1))
    else:
        counts = [int(c) for c in args.counts.split(",")]
        result = []
        for task in args.tasks.split(","):
            result += score_cells(task, args.directions.split(","), counts, Path(args.cache))
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": result}, indent=1) + "\n")
