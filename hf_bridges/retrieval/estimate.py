"""Label-free expected retention of an index bridge, cross-fitted on its paired texts, and the gate a CI uses.

Retention is what the bridge keeps of full re-embedding (the new encoder on both sides, "ceiling B"). Without
queries or relevance labels, the paired texts stand in for both: they are split into folds, each text is mapped by
the map fitted on the other folds, and each text is a query against ``corpus`` (200) other paired texts. The
relevant one is its nearest other text under the sum of both encoders' cosines (a pseudo-relevance neither encoder
owns); the estimate is the share of those the bridge finds in its top ``k`` (mapped query vs stored vectors, or new
query vs migrated vectors) over the share re-embedding finds. The interval is a paired percentile bootstrap over the
texts. docs/retrieval.md measures it against labelled retention.
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
    """Expected retention at ``k`` (the bridge's top-``k`` hits over re-embedding's, against both encoders'
    pseudo-relevance), with a ``confidence`` interval, from ``n`` held-out queries over ``folds`` folds."""

    estimate: float
    low: float
    high: float
    k: int = 10
    n: int = 0
    folds: int = 5
    confidence: float = 0.95
    corpus: int | None = None  # texts each pseudo-query searched (None: all of its fold, format 1)
    reference: str = "new"  # "both / reembed": the ratio against both encoders' pseudo-relevance; "new": a share

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


def _hits(reference: np.ndarray, similarities: np.ndarray, k: int) -> np.ndarray:
    """Per held-out query: is the ``reference`` similarities' best other text in the top ``k`` of the system's
    ``similarities`` (queries x stored texts, unit vectors)?"""
    n = reference.shape[0]
    eye = np.eye(n, dtype=bool)
    target = np.where(eye, -np.inf, reference).argmax(1)
    scores = np.where(eye, -np.inf, similarities)
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (best == target[:, None]).any(1)


CORPUS = 200  # texts each held-out pseudo-query searches (drawn from all the paired texts, each mapped held out)
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
    """Per paired text (row order): 1.0 when a search's top ``k`` holds the reference's best other text, else 0.0.
    Every text is mapped by the map fitted on the other folds (out of fold), so a pseudo-query searches ``corpus``
    texts drawn from *all* the paired texts (``min(corpus, n)``), not from its fold only: the estimate then refers to
    the same corpus size at 250 paired texts as at 2,000. References:

    * ``"new"``: the new encoder on both sides (full re-embedding): the share of re-embedding's top hit the bridge
      keeps;
    * ``"both"``: the sum of both encoders' cosines, the pseudo-relevance neither encoder owns. It ranks maps:
      against the new encoder alone, a map that imitates it (a ridge) beats one that keeps the old encoder's
      geometry (a rotation) even where the old geometry retrieves better (RT, L6 index: docs/retrieval.md).

    ``"reembed_both"`` (not a map's score): re-embedding's own hits against ``"both"``, the denominator of the
    expected retention (:func:`retention_from_hits`). ``"self"`` (not a hit): each text's reciprocal rank of its own
    pair (its vector under the other encoder) among the chunk's, the second half of the maps' selection score
    (``bridge._fit_side``). Two maps scored with one seed can be compared text by text
    (:func:`paired_gain`). The same as :func:`hits_of_mapped` of :func:`cross_fitted_mapped`."""
    if side not in ("query", "migrate"):
        raise ValueError(f"side must be 'query' or 'migrate', got {side!r}")
    mapped = cross_fitted_mapped(source, target, fit, k=k, folds=folds, seed=seed)
    return hits_of_mapped(mapped, source, target, side, k=k, seed=seed, corpus=corpus)


def _check_pairs(n: int, k: int) -> None:
    if n < 2 * max(2 * k, 10):
        raise IndexBridgeError(
            f"{n} paired texts are too few to estimate retention at {k} (need at least {4 * k}); pass more texts"
        )


def cross_fitted_mapped(
    source: np.ndarray, target: np.ndarray, fit: Fitter, *, k: int = 10, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Every source row mapped by the map ``fit`` fitted on the other folds (the folds of :func:`cross_fitted_hits`
    with the same ``k``, ``folds`` and ``seed``), so candidates and their blends can share one set of fits."""
    n = source.shape[0]
    _check_pairs(n, k)
    folds = max(2, min(folds, n // max(2 * k, 10)))
    order = np.random.default_rng(seed).permutation(n)
    mapped = None
    for i in range(folds):
        held = np.sort(order[i::folds])
        keep = np.setdiff1d(np.arange(n), held)
        out = np.asarray(fit(source[keep], target[keep])(source[held]), np.float64)
        mapped = np.zeros((n, out.shape[1])) if mapped is None else mapped
        mapped[held] = out
    return mapped


def hits_of_mapped(
    mapped: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    side: str,
    *,
    k: int = 10,
    seed: int = 0,
    corpus: int = CORPUS,
) -> dict[str, np.ndarray]:
    """:func:`cross_fitted_hits` of out-of-fold ``mapped`` rows (:func:`cross_fitted_mapped`, same ``seed``)."""
    if side not in ("query", "migrate"):
        raise ValueError(f"side must be 'query' or 'migrate', got {side!r}")
    n = source.shape[0]
    _check_pairs(n, k)
    rng = np.random.default_rng(seed)
    rng.permutation(n)  # the folds' order (cross_fitted_mapped): the texts searched together come after it
    new_vectors, old_vectors = (source, target) if side == "query" else (target, source)
    hits = {ref: np.zeros(n) for ref in (*REFERENCES, "reembed_both", "self")}
    for rows in np.array_split(rng.permutation(n), max(1, n // max(corpus, 2 * k))):
        new, old = _unit(new_vectors[rows]), _unit(old_vectors[rows])
        reference = {"new": new @ new.T, "both": new @ new.T + old @ old.T}
        # query side: mapped new query vs the stored old vectors; migrate side: new query vs migrated vectors
        sys_q, sys_d = (mapped[rows], old) if side == "query" else (new, mapped[rows])
        similarities = _unit(sys_q) @ _unit(sys_d).T  # one matrix serves every reference and the self rank
        for ref in REFERENCES:
            hits[ref][rows] = _hits(reference[ref], similarities, k)
        hits["reembed_both"][rows] = _hits(reference["both"], reference["new"], k)
        hits["self"][rows] = _self_reciprocal_rank(similarities)
    return hits


def _self_reciprocal_rank(similarities: np.ndarray) -> np.ndarray:
    """Per text: 1 / the rank of its own other-encoder vector among the chunk's (ties against it), the
    known-item view of a pair: one text seen by both encoders."""
    return 1.0 / (similarities >= np.diag(similarities)[:, None]).sum(1)


BOOTSTRAP_CHUNK = 1 << 20  # resampled indices held at once (8 MiB of int64), whatever the number of texts


def retention_from_hits(
    hit: np.ndarray,
    *,
    reembed: np.ndarray | None = None,
    k: int = 10,
    folds: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = 1000,
) -> RetentionEstimate:
    """The estimate and its percentile-bootstrap interval over the held-out texts: the mean hit, or with
    ``reembed`` (re-embedding's hits on the same texts and reference) the ratio of the two means, resampled in
    pairs: what the bridge keeps of what full re-embedding finds, as the measured retention (bridge / ceiling B).
    The resamples are drawn and averaged ``BOOTSTRAP_CHUNK`` indices at a time (one generator, row after row: the
    same draws as all at once), so 60,000 labelled queries (``IndexBridge.evaluate``) need megabytes, not 1.4 GB."""
    hit = np.asarray(hit, np.float64)
    ref = None if reembed is None else np.asarray(reembed, np.float64)
    n = hit.size
    rng = np.random.default_rng(seed + 1)
    hit_means, ref_means = np.empty(resamples), np.empty(resamples)
    step = max(1, BOOTSTRAP_CHUNK // n)
    for start in range(0, resamples, step):
        draws = rng.integers(0, n, size=(min(step, resamples - start), n))
        hit_means[start : start + len(draws)] = hit[draws].mean(1)
        if ref is not None:
            ref_means[start : start + len(draws)] = ref[draws].mean(1)

    def ratio(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return a if b is None else a / np.maximum(b, 1.0 / n)

    boot = ratio(hit_means, None if ref is None else ref_means)
    tail = (1 - confidence) / 2
    point = ratio(np.array([hit.mean()]), None if ref is None else np.array([ref.mean()]))[0]
    return RetentionEstimate(
        estimate=float(point),
        low=float(np.quantile(boot, tail)),
        high=float(np.quantile(boot, 1 - tail)),
        k=k,
        n=int(n),
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
    The estimate is the bridge's hits over re-embedding's (the new encoder on both sides), both against the
    pseudo-relevance of the two encoders together, so it can exceed 1 where the old index keeps more of that
    reference than re-embedding does."""
    k, folds, seed, corpus = (options.get(n, d) for n, d in (("k", 10), ("folds", 5), ("seed", 0), ("corpus", CORPUS)))
    confidence, resamples = options.get("confidence", 0.95), options.get("resamples", 1000)
    hits = cross_fitted_hits(source, target, fit, side, k=k, folds=folds, seed=seed, corpus=corpus)
    folds = max(2, min(folds, source.shape[0] // max(2 * k, 10)))
    est = retention_from_hits(
        hits["both"],
        reembed=hits["reembed_both"],
        k=k,
        folds=folds,
        seed=seed,
        confidence=confidence,
        resamples=resamples,
    )
    est.corpus, est.reference = corpus_size(source.shape[0], corpus, k), "both / reembed"
    return est


def corpus_size(n: int, corpus: int = CORPUS, k: int = 10) -> int:
    """The number of texts each pseudo-query searched (:func:`cross_fitted_hits`' chunks, the smallest)."""
    return n // max(1, n // max(corpus, 2 * k))
