"""The index bridge on a user's path: figures that must not move, memory that must stay bounded, and bad input that
must be one clear ``HfBridgesError`` (never a numpy / torch traceback, a silent NaN or a half-written file)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from hf_bridges.retrieval import IndexBridge
from hf_bridges.retrieval.estimate import retention_from_hits
from hf_bridges.retrieval.evaluate import BOOTSTRAP_CHUNK, bootstrap_retention


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic(n_pairs: int = 200, n_docs: int = 300, n_queries: int = 500, seed: int = 0):
    """Two linear views (12-d old, 20-d new) of a 16-d latent; a ridge bridge on ``n_pairs`` paired vectors; noisy
    queries of random documents with their relevant index."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_pairs + n_docs, 16)).astype(np.float32)
    mix_old = rng.standard_normal((16, 12)).astype(np.float32)
    mix_new = rng.standard_normal((16, 20)).astype(np.float32)
    old, new = _unit(latent @ mix_old), _unit(latent @ mix_new)
    bridge = IndexBridge.fit_embeddings(old[:n_pairs], new[:n_pairs], translation="ridge", estimate=False)
    relevant = rng.integers(0, n_docs, n_queries)
    noisy = latent[n_pairs:][relevant] + 0.7 * rng.standard_normal((n_queries, 16)).astype(np.float32)
    return bridge, _unit(noisy @ mix_new), new[n_pairs:], old[n_pairs:], [int(r) for r in relevant]


# evaluate_embeddings' retention on synthetic(), as the all-at-once bootstrap computed it before it was chunked
BEFORE = {
    (10, 0, 1000, 0.95): {
        "query": (0.9318181818181819, 0.9028861708547768, 0.9604187240124741),
        "migrate": (0.8471074380165289, 0.8119804078149031, 0.8810481651977183),
    },
    (5, 3, 777, 0.9): {
        "query": (0.8946236559139784, 0.8628443782576322, 0.9282608695652174),
        "migrate": (0.7806451612903225, 0.7472036505428125, 0.815450643776824),
    },
}


@pytest.mark.parametrize("options", list(BEFORE))
def test_the_chunked_bootstrap_gives_the_same_figures_as_before(options):
    k, seed, resamples, confidence = options
    bridge, queries, documents, stored, relevant = synthetic()
    measured = bridge.evaluate_embeddings(
        queries, documents, stored, relevant, k=k, seed=seed, resamples=resamples, confidence=confidence
    )
    for side, figures in BEFORE[options].items():
        r = measured.retention[side]
        assert (r["estimate"], r["low"], r["high"]) == figures  # bit for bit


@pytest.mark.parametrize("n", [1, 7, 200, BOOTSTRAP_CHUNK // 40 + 3, 60_000])
def test_the_chunked_bootstrap_equals_the_all_at_once_one(n):
    rng = np.random.default_rng(n)
    hit, reembed = rng.integers(0, 2, n).astype(float), rng.integers(0, 2, n).astype(float)
    hit[: n // 3] = rng.random(n // 3)  # several relevant documents: shares between 0 and 1
    resamples = 60 if n > 10_000 else 1000
    old = retention_from_hits(hit, reembed=reembed, seed=4, resamples=resamples, confidence=0.9)
    assert bootstrap_retention(hit, reembed, seed=4, resamples=resamples, confidence=0.9) == {
        "estimate": old.estimate,
        "low": old.low,
        "high": old.high,
    }


def test_sixty_thousand_labelled_queries_are_measured_in_bounded_memory():
    """The bootstrap held resamples x queries indices and two float copies at once (1,000 x 60,000: ~1.4 GB)."""
    bridge, _, documents, stored, _ = synthetic(n_docs=500, n_queries=1)
    rng = np.random.default_rng(1)
    relevant = rng.integers(0, 500, 60_000)
    queries = _unit(documents[relevant] + 0.05 * rng.standard_normal((60_000, 20)).astype(np.float32))
    tracemalloc.start()
    try:
        measured = bridge.evaluate_embeddings(queries, documents, stored, relevant.tolist())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert measured.queries == 60_000 and measured.resamples == 1000
    r = measured.retention["query"]
    assert 0 < r["low"] <= r["estimate"] <= r["high"]
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"
