"""Anchor selection: which training samples become the anchors every encoder embeds.

Each strategy returns sorted-by-choice *indices* into the candidate pool, is seeded, and is registered with
:func:`register_anchor_strategy`. ``random`` and ``stratified`` need no encoder; ``kmeans`` and
``farthest_point`` work in one given encoder's embedding space (the chosen indices are then shared by all
encoders, so anchors stay parallel).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..modeling.registry import Registry, registrar

AnchorStrategy = Callable[..., list[int]]
# metadata: needs_embeddings=True for strategies that work in one encoder's embedding space
ANCHOR_STRATEGIES: Registry[AnchorStrategy] = Registry("anchor strategy")
register_anchor_strategy = registrar(ANCHOR_STRATEGIES, needs_embeddings=False)


def needs_embeddings(strategy: str) -> bool:
    return bool(ANCHOR_STRATEGIES.metadata(strategy)["needs_embeddings"])


def select_anchors(
    strategy: str,
    num_anchors: int,
    seed: int = 0,
    *,
    num_candidates: int | None = None,
    labels: Sequence[int] | None = None,
    embeddings: np.ndarray | None = None,
) -> list[int]:
    """Indices of ``num_anchors`` distinct candidates chosen by ``strategy`` (seeded, deterministic)."""
    ANCHOR_STRATEGIES.check(strategy)
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float64)
        num_candidates = len(embeddings)
    elif labels is not None:
        num_candidates = len(labels)
    if num_candidates is None:
        raise ValueError("select_anchors needs num_candidates, labels or embeddings")
    if needs_embeddings(strategy) and embeddings is None:
        raise ValueError(f"anchor strategy {strategy!r} works in an embedding space: pass embeddings")
    if strategy == "stratified" and labels is None:
        raise ValueError("anchor strategy 'stratified' needs the labels of the candidates")
    if num_anchors < 2:
        raise ValueError(f"need at least 2 anchors, got {num_anchors}")
    if num_anchors > num_candidates:
        raise ValueError(
            f"{num_anchors} anchors requested but only {num_candidates} candidates are available; "
            "lower anchors.num_anchors or use a larger split"
        )
    chosen = ANCHOR_STRATEGIES[strategy](
        num_anchors, np.random.default_rng(seed), num_candidates=num_candidates, labels=labels, embeddings=embeddings
    )
    chosen = [int(i) for i in chosen]
    assert len(set(chosen)) == num_anchors, "anchor strategy returned duplicates"
    return chosen


@register_anchor_strategy("random")
def random_anchors(k: int, rng: np.random.Generator, *, num_candidates: int, **_: Any) -> list[int]:
    """Uniform without replacement (the relreps default)."""
    return rng.choice(num_candidates, size=k, replace=False).tolist()


@register_anchor_strategy("stratified")
def stratified_anchors(k: int, rng: np.random.Generator, *, labels: Sequence[int], **_: Any) -> list[int]:
    """Per-class quotas proportional to class frequency (largest remainder), random within each class."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = k * counts / counts.sum()
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[: k - quota.sum()]:
        quota[i] += 1
    chosen: list[int] = []
    for cls, q in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        chosen += rng.choice(members, size=min(q, len(members)), replace=False).tolist()
    if len(chosen) < k:  # a class smaller than its quota: fill from the rest, still without repeats
        rest = np.setdiff1d(np.arange(len(labels)), chosen)
        chosen += rng.choice(rest, size=k - len(chosen), replace=False).tolist()
    return chosen


@register_anchor_strategy("kmeans", needs_embeddings=True)
def kmeans_anchors(k: int, rng: np.random.Generator, *, embeddings: np.ndarray, **_: Any) -> list[int]:
    """k-means on the L2-normalised embeddings; each centroid's nearest unused sample is an anchor."""
    from sklearn.cluster import KMeans

    x = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(x)
    dist = ((x[None, :, :] - km.cluster_centers_[:, None, :]) ** 2).sum(-1) if k * len(x) < 2e7 else None
    if dist is None:
        dist = np.stack([((x - c) ** 2).sum(-1) for c in km.cluster_centers_])
    used: set[int] = set()
    chosen = []
    for row in dist:
        for idx in np.argsort(row):
            if int(idx) not in used:
                used.add(int(idx))
                chosen.append(int(idx))
                break
    return chosen


@register_anchor_strategy("farthest_point", needs_embeddings=True)
def farthest_point_anchors(k: int, rng: np.random.Generator, *, embeddings: np.ndarray, **_: Any) -> list[int]:
    """Greedy farthest-point sampling (cosine distance) from a seeded random start: covers the space evenly."""
    x = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
    chosen = [int(rng.integers(len(x)))]
    nearest = 1.0 - x @ x[chosen[0]]
    nearest[chosen[0]] = -np.inf
    for _ in range(k - 1):
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, 1.0 - x @ x[nxt])
        nearest[chosen] = -np.inf
    return chosen


def select_alignment_set(num_candidates: int, anchor_idx: Sequence[int], count: int, seed: int = 0) -> list[int]:
    """``count`` indices outside the anchors, drawn without labels: an alignment set (inputs that only fit an
    aligned head's map, see ``HeadConfig.relative_anchors``); fewer when the candidates run out."""
    rest = np.setdiff1d(np.arange(num_candidates), np.asarray(list(anchor_idx), dtype=np.int64))
    return [int(i) for i in np.random.default_rng(seed).permutation(rest)[:count]]
