"""Would another kind of map close issue 24's gap? Three variants of the index bridge's maps, scored on the labelled
task of every (cell, side) of the candidate files, against the map the default keeps and aecp's best map.

Round 13 asked whether the last points on BBC's L6 index with mpnet queries (0.977 at 2,000 pairs, target 0.98) come
from a better map rather than a better choice among the seven candidates. Variants, each fitted on all the pairs:

* ``ensembles``: the normalised mean of several candidates' unit outputs (rotation, prior ridge, plain ridge,
  contrastive): averaging maps whose errors are partly independent (the blends' idea, widened);
* ``kernel``: the rotation or the contrastive map plus a kernel-ridge residual on the unit sphere,
  ``k(x, a) = exp(gamma (cos(x, a) - 1))`` over the paired texts (relative coordinates to every pair, the paper's
  invariance fed to a regression), gamma and the ridge strength chosen by 5-fold held-out cosine: a non-linear map;
* ``seeds``: the contrastive map refitted with 3 and 5 seeds (its held-out split and stopping step), outputs
  averaged: is its variance the loss?

    python benchmarks/retrieval_map_variants.py --tasks bbc --variants ensembles,kernel,seeds \
        --json docs/results/retrieval_map_variants_bbc.json          # and rt; ~30 min each on 1 thread
    python benchmarks/retrieval_map_variants.py --analyse docs/results/retrieval_map_variants_bbc.json,...
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
from retrieval_selection import DIRECTIONS, RESULTS

MEMBERS = ("rotation", "prior", "ridge", "contrastive")
ENSEMBLES = {
    "rot+ridge+con": ("rotation", "ridge", "contrastive"),
    "con+ridge": ("contrastive", "ridge"),
    "rot+con": ("rotation", "contrastive"),
    "prior+con": ("prior", "contrastive"),
    "all four": MEMBERS,
}
GAMMAS = (2.0, 5.0, 10.0, 20.0)
KERNEL_ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # times the kernel matrix's mean eigenvalue


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    return np.exp(gamma * (_unit(a) @ _unit(b).T - 1.0))


def fit_kernel_residual(source: np.ndarray, base_out: np.ndarray, target: np.ndarray, folds: int = 5, seed: int = 0):
    """``x -> unit(base(x) + K(x, pairs) beta)``, beta by kernel ridge on the residual ``unit(target) - base``;
    (gamma, alpha) by the k-fold mean cosine of the corrected and true unit vectors (no label)."""
    n = len(source)
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    residual = _unit(target) - base_out
    scores: dict = {}
    for gamma in GAMMAS:
        for f in range(folds):
            test = parts[f]
            train = np.concatenate([parts[j] for j in range(folds) if j != f])
            lam, vec = np.linalg.eigh(_kernel(source[train], source[train], gamma))
            k_test, projected = _kernel(source[test], source[train], gamma), vec.T @ residual[train]
            for alpha in KERNEL_ALPHAS:
                beta = vec @ (projected / (lam + alpha * lam.mean())[:, None])
                cos = (_unit(base_out[test] + k_test @ beta) * _unit(target[test])).sum(1).mean()
                scores[(gamma, alpha)] = scores.get((gamma, alpha), 0.0) + float(cos)
    gamma, alpha = max(scores, key=scores.get)
    k = _kernel(source, source, gamma)
    beta = np.linalg.solve(k + alpha * np.trace(k) / n * np.eye(n), residual)
    return (lambda x, base: _unit(base + _kernel(x, source, gamma) @ beta)), {"gamma": gamma, "alpha": alpha}


def variant_outputs(src, tgt, norm, x, variants):
    """name -> unit outputs on ``x`` of every member and requested variant, fitted ``src`` -> ``tgt``."""
    from hf_bridges.retrieval.maps import fit_candidate, fit_contrastive, unit_rows

    maps = {kind: fit_candidate(src, tgt, norm, kind) for kind in MEMBERS}
    out = {kind: _unit(m(x)) for kind, m in maps.items()}
    if "ensembles" in variants:
        out.update({name: _unit(sum(out[m] for m in members)) for name, members in ENSEMBLES.items()})
    if "kernel" in variants:
        for kind in ("rotation", "contrastive"):
            corrected, _ = fit_kernel_residual(src, _unit(maps[kind](src)), tgt)
            out[f"{kind} + kernel"] = corrected(x, out[kind])
    if "seeds" in variants:
        unit_x = unit_rows(np.asarray(x, np.float64))
        fits = [out["contrastive"]]
        for seed in range(1, 5):
            weight, bias, _ = fit_contrastive(src, tgt, seed=seed)
            fits.append(_unit(unit_x @ weight + bias))
        out["contrastive, 3 seeds"], out["contrastive, 5 seeds"] = _unit(sum(fits[:3])), _unit(sum(fits))
    return out


def score_cells(task: str, directions: list[str], counts: list[int], cache: Path, variants: list[str]) -> list[dict]:
    from hf_bridges.retrieval import retrieval_metrics

    emb = embed_task(TASKS[task](400, 2000), sorted({k for d in directions for k in d.split("-")}), cache / task, 128)
    rows = []
    for direction in directions:
        old, new = direction.split("-")
        m = min(len(emb[old]["corpus"]), len(emb[new]["corpus"]))
        q_new, d_new, d_old = emb[new]["queries"][:m], emb[new]["corpus"][:m], emb[old]["corpus"][:m]
        p_old, p_new = emb[old]["pool"], emb[new]["pool"]
        ceiling = retrieval_metrics(q_new, d_new)["recall@10"]
        norm = {k: bool(np.allclose(np.linalg.norm(emb[k]["pool"][:50], axis=1), 1, atol=1e-3)) for k in (old, new)}
        for n in (c for c in counts if c <= min(len(p_old), len(p_new))):
            start = time.perf_counter()
            sides = {
                "query": (p_new[:n], p_old[:n], norm[old], q_new),
                "migrate": (p_old[:n], p_new[:n], norm[new], d_old),
            }
            for side, (src, tgt, tnorm, x) in sides.items():
                retention = {}
                for name, vectors in variant_outputs(src, tgt, tnorm, x, variants).items():
                    q, d = (vectors, d_old) if side == "query" else (q_new, vectors)
                    retention[name] = retrieval_metrics(q.astype(np.float32), d)["recall@10"] / ceiling
                rows.append({"task": task, "old": old, "new": new, "pairs": n, "side": side, "retention": retention})
            print(f"{task} {old}<-{new} {n}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def analyse(paths: list[str]) -> dict:
    """Each variant against the default's kept map (mean, worst, cells better / worse) and aecp's best map."""
    pick, aecp = {}, {}
    for path in RESULTS.glob("retrieval_*_*.json"):
        if path.stem.startswith(("retrieval_candidates", "retrieval_selection")) or path.stem.endswith(
            ("_200", "_600", "_4000", "_limit", "_queries", "_variants_bbc", "_variants_rt")
        ):
            continue
        for r in json.loads(path.read_text()).get("rows", []):
            cell = (r.get("task"), r.get("old"), r.get("new"), r.get("pairs"), r.get("side"))
            if r.get("system") == "bridge (best)":
                pick[cell] = r["retention"]
            elif str(r.get("system", "")).startswith("aecp"):
                aecp[cell] = max(aecp.get(cell, -1.0), r["retention"])
    rows = [r for p in paths for r in json.loads(Path(p).read_text())["rows"]]
    cells = [(r, (r["task"], r["old"], r["new"], r["pairs"], r["side"])) for r in rows]
    cells = [(r, c) for r, c in cells if c in pick and c in aecp]
    out = {"cells": len(cells)}
    names = ["the default's kept map", *cells[0][0]["retention"]] if cells else []
    for name in names:
        got = np.array([pick[c] if name == names[0] else r["retention"][name] for r, c in cells])
        delta = 100 * (got - np.array([pick[c] for _, c in cells]))
        vs_aecp = 100 * (got - np.array([aecp[c] for _, c in cells]))
        out[name] = {
            "mean_retention": round(float(got.mean()), 4),
            "vs_kept_mean": round(float(delta.mean()), 2),
            "vs_kept_worst": round(float(delta.min()), 1),
            "better_worse": [int((delta > 1e-7).sum()), int((delta < -1e-7).sum())],
            "at_or_above_aecp": int((vs_aecp > -1e-7).sum()),
            "worst_vs_aecp": round(float(vs_aecp.min()), 1),
        }
    issue = [r for r, c in cells if c[:4] == ("bbc", "L6", "mpnet", 2000)]
    out["L6<-mpnet bbc 2000"] = {r["side"]: {k: round(v, 3) for k, v in r["retention"].items()} for r in issue}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="bbc,rt")
    parser.add_argument("--directions", default=DIRECTIONS)
    parser.add_argument("--counts", default="250,500,1000,2000")
    parser.add_argument("--variants", default="ensembles,kernel,seeds")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--json", help="write the labelled retention of every variant here")
    parser.add_argument("--analyse", help="comma-separated --json files: each variant against the kept map and aecp")
    args = parser.parse_args()
    if args.analyse:
        print(json.dumps(analyse(args.analyse.split(",")), indent=1))
    else:
        counts, variants = [int(c) for c in args.counts.split(",")], args.variants.split(",")
        result = []
        for task in args.tasks.split(","):
            result += score_cells(task, args.directions.split(","), counts, Path(args.cache), variants)
            if args.json:  # after each task (a long run keeps what it measured), written whole then renamed
                tmp = Path(f"{args.json}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"rows": result}, indent=1) + "\n")
                os.replace(tmp, args.json)
