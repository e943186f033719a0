"""Retrieval metrics for one relevant document per query (known-item search), in numpy, batched.

Scores are inner products (the vectors a sentence-transformers encoder with ``Normalize`` returns make them
cosines): what a vector store with an inner-product or cosine index computes.
"""

from __future__ import annotations

import numpy as np


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
    """1-based rank of each query's relevant document (ties count against it)."""
    ranks = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], batch_size):
        scores = queries[start : start + batch_size] @ corpus.T
        rows = np.arange(scores.shape[0])
        target = scores[rows, relevant[start : start + batch_size]]
        ranks[start : start + batch_size] = 1 + (scores > target[:, None]).sum(1)
    return ranks


def retrieval_metrics(
    queries: np.ndarray, corpus: np.ndarray, relevant: np.ndarray | None = None, k: int = 10
) -> dict[str, float]:
    """Recall@k, nDCG@k and MRR with one relevant document per query (``relevant[i]``; default: query i <-> doc i)."""
    relevant = np.arange(queries.shape[0]) if relevant is None else np.asarray(relevant)
    ranks = ranks_of(np.asarray(queries, np.float32), np.asarray(corpus, np.float32), relevant)
    hit = ranks <= k
    return {
        f"recall@{k}": float(hit.mean()),
        f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 1), 0.0).mean()),
        "mrr": float((1.0 / ranks).mean()),
    }
