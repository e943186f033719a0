"""Label-free expected retention of an index bridge, cross-fitted on its paired texts, and the gate a CI uses.

Retention is what the bridge keeps of full re-embedding (the new encoder on both sides, "ceiling B"). Without
queries or relevance labels, the paired texts stand in for both: they are split into folds, the map is fitted on
the others, and each held-out text is a query against the held-out texts as a corpus. Ceiling B's best result for
it (its nearest other text, new encoder on both sides) is taken as the relevant one, and the bridge's ranking
(mapped query vs stored vectors, or new query vs migrated vectors) is scored on whether that result is in its
top ``k``: the share of re-embedding's top hit the bridge keeps. The interval is a percentile bootstrap over the
held-out queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .encoders import IndexBridgeError

Fitter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


class RetentionGateError(IndexBridgeError):
    """The bridge's expected retention is below the threshold a caller (a CI job) asked for."""


@dataclass
class RetentionEstimate:
    """Expected retention at ``k`` (share of re-embedding's top hit kept in the bridge's top ``k``), with a
    ``confidence`` interval, from ``n`` held-out queries over ``folds`` folds."""

    estimate: float
    low: float
    high: float
    k: int = 10
    n: int = 0
    folds: int = 5
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RetentionEstimate:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def __str__(self) -> str:
        level = round(100 * self.confidence)
        return (
            f"expected retention@{self.k} {self.estimate:.3f} ({level}% interval {self.low:.3f}-{self.high:.3f}; "
            f"{self.n} held-out paired texts, {self.folds}-fold)"
        )

    def check(self, minimum: float, bound: str = "estimate") -> None:
        """Raise :class:`RetentionGateError` when the ``bound`` ('estimate' or 'low') is below ``minimum``."""
        if bound not in ("estimate", "low"):
            raise ValueError(f"bound must be 'estimate' or 'low', got {bound!r}")
        value = self.estimate if bound == "estimate" else self.low
        if value < minimum:
            raise RetentionGateError(
                f"{self} is below the required {minimum:.3f} ({bound}): re-embed the corpus, or fit the bridge on "
                "more paired texts from your own corpus"
            )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _hits(ref_q: np.ndarray, ref_d: np.ndarray, sys_q: np.ndarray, sys_d: np.ndarray, k: int) -> np.ndarray:
    """Per held-out query: is the reference ranking's best other text in the system ranking's top ``k``?"""
    n = ref_q.shape[0]
    eye = np.eye(n, dtype=bool)
    ref = np.where(eye, -np.inf, _unit(ref_q) @ _unit(ref_d).T)
    target = ref.argmax(1)
    scores = np.where(eye, -np.inf, _unit(sys_q) @ _unit(sys_d).T)
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (best == target[:, None]).any(1)


def cross_fitted_retention(
    source: np.ndarray,
    target: np.ndarray,
    fit: Fitter,
    side: str,
    *,
    k: int = 10,
    folds: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = 1000,
) -> RetentionEstimate:
    """Expected retention of the map ``source -> target`` on the paired rows, cross-fitted over ``folds``.

    ``side="query"``: source = new encoder, target = old (stored) vectors: the bridge ranks mapped new vectors
    against the stored old ones. ``side="migrate"``: source = old, target = new: new vectors rank migrated ones.
    Either way the reference is the new encoder on both sides (full re-embedding)."""
    if side not in ("query", "migrate"):
        raise ValueError(f"side must be 'query' or 'migrate', got {side!r}")
    n = source.shape[0]
    folds = max(2, min(folds, n // max(2 * k, 10)))
    if n < 2 * max(2 * k, 10):
        raise IndexBridgeError(
            f"{n} paired texts are too few to estimate retention at {k} (need at least {4 * k}); pass more texts"
        )
    order = np.random.default_rng(seed).permutation(n)
    hits = []
    for i in range(folds):
        held = np.sort(order[i::folds])
        keep = np.setdiff1d(np.arange(n), held)
        mapped = fit(source[keep], target[keep])(source[held])
        if side == "query":  # new query -> map -> old index
            new = source[held]
            hits.append(_hits(new, new, mapped, target[held], k))
        else:  # new query -> migrated index
            new = target[held]
            hits.append(_hits(new, new, new, mapped, k))
    hit = np.concatenate(hits).astype(np.float64)
    rng = np.random.default_rng(seed + 1)
    boot = hit[rng.integers(0, hit.size, size=(resamples, hit.size))].mean(1)
    tail = (1 - confidence) / 2
    return RetentionEstimate(
        estimate=float(hit.mean()),
        low=float(np.quantile(boot, tail)),
        high=float(np.quantile(boot, 1 - tail)),
        k=k,
        n=int(hit.size),
        folds=folds,
        confidence=confidence,
    )
