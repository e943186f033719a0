"""Retrieval metrics for one or several relevant documents per query, in numpy, batched: Recall@k (the share of a
query's relevant documents in its top k), nDCG@k (binary gains) and MRR (the first relevant document's reciprocal
rank), as BEIR and sentence-transformers' ``InformationRetrievalEvaluator`` define them (MRR without a cutoff).

Scores are inner products (the vectors a sentence-transformers encoder with ``Normalize`` returns make them
cosines): what a vector store with an inner-product or cosine index computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

Relevant = np.ndarray | Sequence[int | Iterable[int]]  # per query: one document index or a collection of them


def top_k(queries: np.ndarray, corpus: np.ndarray, k: int, batch_size: int = 1024) -> np.ndarray:
    """Indices (n_queries, k) of the ``k`` highest inner products, best first."""
    k = min(k, corpus.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], batch_size):
        scores = queries[start : start + batch_size] @ corpus.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start : start + batch_size] = np.take_along_axis(part, order, axis=1)
    return out


def ranks_of(queries: np.ndarray, corpus: np.ndarray, relevant: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """1-based rank of each query's relevant document, ``relevant`` (n,), or documents, (n, m); ties count in its
    favour. Each batch's scores are computed once for all of a query's relevant documents."""
    relevant = np.asarray(relevant)
    ranks = np.empty(relevant.shape, dtype=np.int64)
    for start in range(0, queries.shape[0], batch_size):
        scores = queries[start : start + batch_size] @ corpus.T
        rel = relevant[start : start + batch_size].reshape(scores.shape[0], -1)
        target = np.take_along_axis(scores, rel, axis=1)
        batch = np.stack([1 + (scores > target[:, j, None]).sum(1) for j in range(rel.shape[1])], axis=1)
        ranks[start : start + batch_size] = batch.reshape(relevant[start : start + batch_size].shape)
    return ranks


def relevant_matrix(relevant: Relevant | None, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, mask)``, both (n_queries, most relevant documents of a query): ``relevant`` holds one document
    index per query or a collection of them (None: query i <-> document i); rows are padded, ``mask`` marks the
    real entries. Indices are not range-checked here (``evaluate`` does it with the message a user needs)."""
    if relevant is None:
        return np.arange(n_queries)[:, None], np.ones((n_queries, 1), bool)
    if isinstance(relevant, np.ndarray) and relevant.ndim == 1:
        return relevant.astype(np.int64)[:, None], np.ones((len(relevant), 1), bool)
    rows = [sorted({int(i) for i in r}) if isinstance(r, Iterable) else [int(r)] for r in relevant]
    empty = next((i for i, r in enumerate(rows) if not r), None)
    if empty is not None:
        raise ValueError(f"query {empty} has no relevant document: every query needs at least one")
    width = max(len(r) for r in rows)
    indices = np.array([r + r[:1] * (width - len(r)) for r in rows], dtype=np.int64)
    return indices, np.array([[j < len(r) for j in range(width)] for r in rows])


def per_query_metrics(
    queries: np.ndarray, corpus: np.ndarray, relevant: Relevant | None = None, k: int = 10
) -> dict[str, np.ndarray]:
    """Per query: ``recall`` (share of its relevant documents in the top ``k``), ``ndcg`` (nDCG@k, binary gains)
    and ``rr`` (reciprocal rank of its best-ranked relevant document); ``relevant`` as in :func:`relevant_matrix`."""
    queries, corpus = np.asarray(queries, np.float32), np.asarray(corpus, np.float32)
    indices, mask = relevant_matrix(relevant, queries.shape[0])
    ranks = ranks_of(queries, corpus, indices)
    hit = (ranks <= k) & mask
    count = mask.sum(1)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(count, k) - 1]
    return {
        "recall": hit.sum(1) / count,
        "ndcg": np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).sum(1) / ideal,
        "rr": 1.0 / np.where(mask, ranks, np.iinfo(np.int64).max).min(1),
    }


def mean_metrics(per_query: dict[str, np.ndarray], k: int) -> dict[str, float]:
    """``{"recall@k", "ndcg@k", "mrr"}``: the means of :func:`per_query_metrics`."""
    return {
        f"recall@{k}": float(per_query["recall"].mean()),
        f"ndcg@{k}": float(per_query["ndcg"].mean()),
        "mrr": float(per_query["rr"].mean()),
    }


def retrieval_metrics(
    queries: np.ndarray, corpus: np.ndarray, relevant: Relevant | None = None, k: int = 10
) -> dict[str, float]:
    """Recall@k, nDCG@k and MRR over the queries; ``relevant[i]``: query i's relevant document index, or a collection
    of them (default: query i <-> document i)."""
    return mean_metrics(per_query_metrics(queries, corpus, relevant, k), k)
