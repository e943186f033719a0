"""Measured retention of an index bridge on the user's own labelled queries (``IndexBridge.evaluate``).

The label-free expected retention cannot see the user's query distribution nor which encoder serves their task
better (docs/retrieval.md, "What no label-free estimate can do"); a few hundred labelled queries can. The inputs are
sentence-transformers' ``InformationRetrievalEvaluator``'s, as lists: queries, documents (the relevant ones and
distractors, a sample of the corpus) and each query's relevant document indices. Three systems are scored with
``metrics.per_query_metrics``: the query side (mapped new queries against the stored old vectors), the migrate side
(new queries against the migrated vectors) and ceiling B (the new encoder on both sides, full re-embedding);
retention is a side's Recall@k over ceiling B's, with a paired percentile bootstrap interval over the queries
(``estimate.retention_from_hits``, as the label-free estimate's).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..logging import user_stacklevel
from .encoders import PROBE_TEXTS, PROBE_TOLERANCE, IndexBridgeError, TextEncoder, load_text_encoder
from .estimate import RetentionEstimate, RetentionGateError, _unit, retention_from_hits
from .inputs import check_batch_size, check_confidence, finite, gate_options, text_list, whole_number
from .metrics import mean_metrics, per_query_metrics

SIDES = ("query", "migrate")
LABELS = {"query": "query side", "migrate": "migrate side", "reembed": "ceiling B (re-embedded)"}


@dataclass
class RetentionMeasurement:
    """Retention at ``k`` measured on ``queries`` labelled queries over ``documents`` documents: per system
    (``"query"``, ``"migrate"``, ``"reembed"`` = ceiling B) Recall@k, nDCG@k and MRR; per side the retention
    (``estimate``, ``low``, ``high``: Recall@k over ceiling B's, ``confidence`` bootstrap interval); ``expected``:
    the bridge's label-free estimate, to read next to it."""

    k: int
    queries: int
    documents: int
    metrics: dict[str, dict[str, float]]
    retention: dict[str, dict[str, float]]
    expected: dict[str, RetentionEstimate] = field(default_factory=dict)
    confidence: float = 0.95
    resamples: int = 1000
    old_vectors: str = "given"  # where the old index's vectors came from: "given" or the encoder re-embedding them

    def to_dict(self) -> dict:
        return {**asdict(self), "expected": {side: est.to_dict() for side, est in self.expected.items()}}

    def __str__(self) -> str:
        k, level = self.k, round(100 * self.confidence)
        lines = [
            f"retention@{k} measured on {self.queries} labelled queries over {self.documents} documents "
            f"(old index vectors: {self.old_vectors})",
            f"  {'system':<24} {f'R@{k}':>7} {f'nDCG@{k}':>8} {'MRR':>7}  retention ({level}% interval)",
        ]
        for system, label in LABELS.items():
            m = self.metrics[system]
            r = self.retention.get(system)
            kept = f"{r['estimate']:.3f} ({r['low']:.3f}-{r['high']:.3f})" if r else "1 (the reference)"
            lines.append(f"  {label:<24} {m[f'recall@{k}']:>7.3f} {m[f'ndcg@{k}']:>8.3f} {m['mrr']:>7.3f}  {kept}")
        for side, est in sorted(self.expected.items(), key=lambda item: SIDES.index(item[0])):
            lines.append(f"  label-free, {side} side: {est}")
        return "\n".join(lines)

    def check(self, minimum: float, side: str = "query", bound: str = "estimate") -> None:
        """Raise :class:`RetentionGateError` when ``side``'s measured retention (``bound``: 'estimate' or 'low', the
        interval's lower end) is below ``minimum``: the gate of ``IndexBridge.gate``, on labelled queries."""
        minimum = gate_options(minimum, side, bound)
        r = self.retention[side]
        if r[bound] < minimum:
            narrow = (
                f"; the estimate {r['estimate']:.3f} passes: label more queries to narrow the interval"
                if bound == "low" and r["estimate"] >= minimum
                else ""
            )
            raise RetentionGateError(
                f"measured {side}-side retention@{self.k} {r['estimate']:.3f} "
                f"({round(100 * self.confidence)}% interval {r['low']:.3f}-{r['high']:.3f}, {self.queries} "
                f"labelled queries) is below the required {minimum:.3f} ({bound}): re-embed the corpus with the new "
                f"encoder, or refit the bridge on more paired texts from your own corpus{narrow}"
            )


def measure_retention(
    bridge: Any,
    queries: Sequence[str],
    documents: Sequence[str],
    relevant: Sequence[Any] | None = None,
    *,
    old_vectors: np.ndarray | None = None,
    k: int = 10,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
) -> RetentionMeasurement:
    """``IndexBridge.evaluate``: every input is checked before anything is embedded."""
    queries, documents = text_list("queries", queries), text_list("documents", documents)
    relevant = _relevant(relevant, len(queries), len(documents))
    _check_options(k, resamples, confidence, seed)
    check_batch_size(batch_size)
    _check_sizes(len(queries), len(documents), k, warn=False)  # measure_embeddings warns, once
    if old_vectors is not None:
        old_vectors = _stored(bridge, old_vectors, len(documents))
        source, old_encoder = "given", None
    else:
        old_encoder = _old_encoder(bridge)
        source = f"re-embedded with {old_encoder.name_or_path}"
    new = bridge._new_encoder()
    if old_encoder is not None:
        old_vectors = old_encoder.encode(documents, "document", batch_size)
    new_queries = new.encode(queries, "query", batch_size)
    new_documents = new.encode(documents, "document", batch_size)
    return measure_embeddings(
        bridge,
        new_queries,
        new_documents,
        old_vectors,
        relevant,
        k=k,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        source=source,
    )


def measure_embeddings(
    bridge: Any,
    new_queries: np.ndarray,
    new_documents: np.ndarray,
    old_vectors: np.ndarray,
    relevant: Sequence[Any] | None = None,
    *,
    k: int = 10,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    source: str = "given",
) -> RetentionMeasurement:
    """``IndexBridge.evaluate_embeddings``: the measurement on vectors already embedded (the new encoder's query
    vectors and document vectors, the index's stored old vectors of the same documents)."""
    new_queries = finite("new_queries", new_queries)
    new_documents = finite("new_documents", new_documents)
    relevant = _relevant(relevant, new_queries.shape[0], new_documents.shape[0])
    _check_options(k, resamples, confidence, seed)
    _check_sizes(new_queries.shape[0], new_documents.shape[0], k)
    old_vectors = _stored(bridge, old_vectors, new_documents.shape[0])
    bridge._check_width(new_documents, bridge.new, "new_documents", "new")
    per = {
        "query": per_query_metrics(bridge.map_queries(new_queries), old_vectors, relevant, k),
        "migrate": per_query_metrics(new_queries, bridge.migrate(old_vectors), relevant, k),
        "reembed": per_query_metrics(new_queries, new_documents, relevant, k),
    }
    metrics = {system: mean_metrics(p, k) for system, p in per.items()}
    if metrics["reembed"][f"recall@{k}"] == 0:
        raise IndexBridgeError(
            f"full re-embedding finds none of the relevant documents in its top {k}: retention (a share of what it "
            "finds) is undefined; check that relevant[i] indexes query i's documents, or raise k"
        )
    retention = {}
    for side in SIDES:
        est = retention_from_hits(
            per[side]["recall"],
            reembed=per["reembed"]["recall"],
            k=k,
            seed=seed,
            confidence=confidence,
            resamples=resamples,
        )
        retention[side] = {"estimate": est.estimate, "low": est.low, "high": est.high}
    return RetentionMeasurement(
        k=k,
        queries=new_queries.shape[0],
        documents=new_documents.shape[0],
        metrics=metrics,
        retention=retention,
        expected=dict(bridge.retention),
        confidence=confidence,
        resamples=resamples,
        old_vectors=source,
    )


def _check_options(k: Any, resamples: Any, confidence: Any, seed: Any) -> None:
    whole_number("k", k)
    whole_number("resamples", resamples)
    check_confidence(confidence)
    whole_number("seed", seed, 0, " (it seeds the bootstrap)")


FEW_QUERIES = 30  # below this a bootstrap over the queries understates the interval (1 query: zero width)


def _check_sizes(n_queries: int, n_documents: int, k: int, warn: bool = True) -> None:
    """A search of ``k`` or fewer documents finds every one (retention 1 whatever the bridge); very few queries give
    an interval that looks narrower than it is."""
    if n_documents <= k:
        raise IndexBridgeError(
            f"{n_documents} documents and k={k}: every system finds every document in its top {k}, so retention reads "
            f"1 whatever the bridge does; add distractors (more documents from your corpus) or lower k"
        )
    if warn and n_queries < FEW_QUERIES:
        warnings.warn(
            f"{n_queries} labelled queries: the interval of so few understates the uncertainty; label at least "
            f"{FEW_QUERIES} (a few hundred for +-3 points, docs/retrieval.md)",
            stacklevel=user_stacklevel(),
        )


def _relevant(relevant: Sequence[Any] | None, n_queries: int, n_documents: int) -> list[list[int]]:
    """Per query the sorted indices of its relevant documents, every one checked against the documents."""
    if relevant is None:
        if n_queries != n_documents:
            raise IndexBridgeError(
                f"{n_queries} queries and {n_documents} documents: without relevant=, query i's relevant document is "
                "documents[i] (known-item search), so both lists must be as long; pass relevant= (one index, or a "
                "list of indices, per query) when the documents include distractors"
            )
        return [[i] for i in range(n_queries)]
    if isinstance(relevant, (str, bytes)) or len(relevant) != n_queries:
        raise IndexBridgeError(
            f"relevant has {len(relevant)} entries for {n_queries} queries: give one per query (a document index or "
            "a list of them)"
        )
    out = []
    for i, entry in enumerate(relevant):
        items = [entry] if isinstance(entry, numbers.Integral) else entry
        if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
            raise IndexBridgeError(f"relevant[{i}] is {entry!r}: give a document index or a list of them")
        items = list(items)
        if not items:
            raise IndexBridgeError(f"relevant[{i}] is empty: every query needs at least one relevant document")
        for j in items:
            if isinstance(j, bool) or not isinstance(j, numbers.Integral):
                raise IndexBridgeError(f"relevant[{i}] holds {j!r}, not a document index")
            if not 0 <= j < n_documents:
                raise IndexBridgeError(
                    f"relevant[{i}] = {j} is out of range: there are {n_documents} documents (indices 0-{n_documents - 1})"
                )
        out.append(sorted({int(j) for j in items}))
    return out


def _stored(bridge: Any, old_vectors: np.ndarray, n_documents: int) -> np.ndarray:
    """The index's stored vectors of the documents: 2-D, one row per document, the old encoder's width, finite."""
    shape = np.shape(old_vectors)
    if len(shape) != 2:
        raise IndexBridgeError(
            f"old_vectors must be a 2-D array (rows, width), one row per document, got shape {shape}"
        )
    if shape[0] != n_documents:
        raise IndexBridgeError(
            f"old_vectors has {shape[0]} rows for {n_documents} documents: pass the index's stored vector of each "
            "document, in the documents' order"
        )
    old_vectors = np.asarray(old_vectors)
    bridge._check_width(old_vectors, bridge.old, "old_vectors", "old")
    return finite("old_vectors", old_vectors)


def _old_encoder(bridge: Any) -> TextEncoder:
    """The recorded old encoder (name and revision), to embed the documents as the index did; else the fix."""
    record = bridge.old
    name = record.get("name_or_path")
    fix = "pass old_vectors=, the vectors your index stores for these documents (in their order)"
    if not name or name.startswith("an unnamed"):
        raise IndexBridgeError(f"this bridge records no old encoder to embed the documents with: {fix}")
    try:
        encoder = load_text_encoder(name, record.get("revision"))
    except Exception as error:  # offline and not cached, moved, not a sentence-transformers model...
        raise IndexBridgeError(f"cannot load the bridge's old encoder {name} ({error}): {fix}") from None
    if encoder.dim != record["hidden_size"]:
        raise IndexBridgeError(
            f"the old encoder {name} loaded as {encoder.dim}-d but the bridge's old index is {record['hidden_size']}-d: {fix}"
        )
    if bridge.texts is not None and bridge.old_vectors is not None:  # does it embed as the index's encoder did?
        stored = np.asarray(bridge.old_vectors[:PROBE_TEXTS], np.float32)
        again = encoder.encode(list(bridge.texts[: len(stored)]), "document")
        cosine = float((_unit(again) * _unit(stored)).sum(1).mean())
        if cosine < 1.0 - PROBE_TOLERANCE:
            raise IndexBridgeError(
                f"the old encoder {name} as loaded here embeds the bridge's first {len(stored)} paired texts unlike "
                f"the vectors stored with it (mean cosine {cosine:.3f}; the same encoder gives 1.000): another "
                f"revision, folder content or setting, so documents it embeds are not what the index holds; {fix}"
            )
    return encoder
