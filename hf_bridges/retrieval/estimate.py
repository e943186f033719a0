"""Label-free expected retention of an index bridge, cross-fitted on its paired texts, and the gate a CI uses.

Retention is what the bridge keeps of full re-embedding (the new encoder on both sides, "ceiling B"). Without
queries or relevance labels, the paired texts stand in for both: they are split into folds, the map is fitted on
the others, and each held-out text is a query against ``corpus`` (50) held-out texts of its fold. Ceiling B's best result for
it (its nearest other text, new encoder on both sides) is taken as the relevant one, and the bridge's ranking
(mapped query vs stored vectors, or new query vs migrated vectors) is scored on whether that result is in its
top ``k``: the share of re-embedding's top hit the bridge keeps. The interval is a percentile bootstrap over the
held-out queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

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
    corpus: int | None = None  # held-out texts each pseudo-query searched (None: all of its fold, format 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RetentionEstimate:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def __str__(self) -> str:
        level = round(100 * self.confidence)
        return (
            f"expected retention@{self.k} {self.estimate:.3f} ({level}% interval {self.low:.3f}-{self.high:.3f}; "
            f"{self.n} held-out paired texts, {self.folds}-fold"
            f"{f', each searching {self.corpus}' if self.corpus else ''})"
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


def _hits(reference: np.ndarray, sys_q: np.ndarray, sys_d: np.ndarray, k: int) -> np.ndarray:
    """Per held-out query: is the ``reference`` similarities' best other text in the system ranking's top ``k``?"""
    n = reference.shape[0]
    eye = np.eye(n, dtype=bool)
    target = np.where(eye, -np.inf, reference).argmax(1)
    scores = np.where(eye, -np.inf, _unit(sys_q) @ _unit(sys_d).T)
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (best == target[:, None]).any(1)


CORPUS = 50  # texts each held-out pseudo-query searches (the held-out fold's size at 250 paired texts)
REFERENCES = ("new", "both")


def cross_fitted_hits(
    source: np.ndarray,
    target: np.ndarray,
    fit: Fitter,
    side: str,
    *,
    k: int = 10,
    folds: int = 5,
    seed: int = 0,
    corpus: int = CORPUS,
) -> dict[str, np.ndarray]:
    """Per paired text (row order; each scored once, held out), for each reference: 1.0 when the bridge's top
    ``k`` holds the reference's best other text, else 0.0. Each held-out text searches ``corpus`` held-out texts of
    its fold (at least ``2 k``), however many texts were passed. References:

    * ``"new"``: the new encoder on both sides (full re-embedding): the share of re-embedding's top hit the bridge
      keeps, the expected retention (:func:`cross_fitted_retention`);
    * ``"both"``: the sum of both encoders' cosines, the pseudo-relevance neither encoder owns. It ranks maps:
      against the new encoder alone, a map that imitates it (a ridge) beats one that keeps the old encoder's
      geometry (a rotation) even where the old geometry retrieves better (RT, L6 index: docs/retrieval.md).

    Two maps scored with one seed can be compared text by text (:func:`paired_gain`)."""
    if side not in ("query", "migrate"):
        raise ValueError(f"side must be 'query' or 'migrate', got {side!r}")
    n = source.shape[0]
    if n < 2 * max(2 * k, 10):
        raise IndexBridgeError(
            f"{n} paired texts are too few to estimate retention at {k} (need at least {4 * k}); pass more texts"
        )
    folds = max(2, min(folds, n // max(2 * k, 10)))
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    new_vectors, old_vectors = (source, target) if side == "query" else (target, source)
    hits = {ref: np.zeros(n) for ref in REFERENCES}
    for i in range(folds):
        held = np.sort(order[i::folds])
        keep = np.setdiff1d(np.arange(n), held)
        mapped = fit(source[keep], target[keep])(source[held])
        # a fixed-size held-out corpus: with all held-out texts as one corpus, the pseudo-search gets harder as the
        # user passes more texts, and the estimate fell while the measured retention rose (docs/retrieval.md)
        for chunk in np.array_split(rng.permutation(held.size), max(1, held.size // max(corpus, 2 * k))):
            rows = held[chunk]
            new, old = _unit(new_vectors[rows]), _unit(old_vectors[rows])
            reference = {"new": new @ new.T, "both": new @ new.T + old @ old.T}
            # query side: mapped new query vs the stored old vectors; migrate side: new query vs migrated vectors
            sys_q, sys_d = (mapped[chunk], old) if side == "query" else (new, mapped[chunk])
            for ref in REFERENCES:
                hits[ref][rows] = _hits(reference[ref], sys_q, sys_d, k)
    return hits


def retention_from_hits(
    hit: np.ndarray, *, k: int = 10, folds: int = 5, seed: int = 0, confidence: float = 0.95, resamples: int = 1000
) -> RetentionEstimate:
    """The estimate (mean hit) and its percentile-bootstrap interval over the held-out texts."""
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


def paired_gain(better: np.ndarray, base: np.ndarray, z: float = 1.645) -> tuple[float, float]:
    """``(mean gain, its lower one-sided bound)`` of per-text hits ``better`` over ``base`` (the same held-out
    texts): the bound is the mean difference less ``z`` standard errors (1.645: 95 %, one-sided)."""
    diff = np.asarray(better, np.float64) - np.asarray(base, np.float64)
    se = diff.std(ddof=1) / np.sqrt(diff.size) if diff.size > 1 else np.inf
    return float(diff.mean()), float(diff.mean() - z * se)


def cross_fitted_retention(
    source: np.ndarray, target: np.ndarray, fit: Fitter, side: str, **options: Any
) -> RetentionEstimate:
    """Expected retention of the map ``source -> target`` on the paired rows, cross-fitted (``options``: the ``k``,
    ``folds``, ``seed`` and ``corpus`` of :func:`cross_fitted_hits`, the ``confidence`` and ``resamples`` of
    :func:`retention_from_hits`).

    ``side="query"``: source = new encoder, target = old (stored) vectors: the bridge ranks mapped new vectors
    against the stored old ones. ``side="migrate"``: source = old, target = new: new vectors rank migrated ones.
    Either way the reference is the new encoder on both sides (full re-embedding)."""
    k, folds, seed, corpus = (options.get(n, d) for n, d in (("k", 10), ("folds", 5), ("seed", 0), ("corpus", CORPUS)))
    confidence, resamples = options.get("confidence", 0.95), options.get("resamples", 1000)
    hit = cross_fitted_hits(source, target, fit, side, k=k, folds=folds, seed=seed, corpus=corpus)["new"]
    folds = max(2, min(folds, source.shape[0] // max(2 * k, 10)))
    est = retention_from_hits(hit, k=k, folds=folds, seed=seed, confidence=confidence, resamples=resamples)
    est.corpus = max(corpus, 2 * k)
    return est
