"""Scoring one trained head on one test encoder: label-free subspace choice, accuracy / macro-F1, latent similarity."""

from __future__ import annotations

import hashlib
import weakref

import numpy as np
import torch

from ..heads.compatibility import (
    DENSE_REPORT_ANCHORS,
    CkaOperand,
    align_head,
    anchor_space,
    cka_operand,
    projection_scores,
    select_subspaces,
    subspace_scores,
)
from ..heads.translation import fit_orthogonal
from ..metrics import classification_scores, latent_similarity
from ..metrics.latent import LatentSpace, latent_space
from .config import LatentSpec, MethodSpec
from .training import predict, predict_with_representation


def pair_memo(feature_cache: dict | None, train_anchors: np.ndarray, test_anchors: np.ndarray) -> dict | None:
    """What depends on one (training anchors, test anchors) pair alone (subspace scores, the aligned map, the stitch
    signals, the translation's map), kept for the run in ``feature_cache``: every seed and method re-attaches to the
    same pairs."""
    if feature_cache is None:
        return None
    store = feature_cache.setdefault("evaluation", {})
    key = (id(train_anchors), id(test_anchors))
    if key not in store:  # the arrays are kept alongside, so their ids cannot be reused while cached
        store[key] = (train_anchors, test_anchors, {})
    return store[key][2]


def _anchor_operands(
    anchors: np.ndarray, method: MethodSpec, feature_cache: dict | None
) -> dict[str, torch.Tensor | CkaOperand]:
    """One encoder's anchor-vs-anchor matrices for ``method`` (``anchor_space``), prepared for the CKA once per run
    (``cka_operand``: centred, with their self-product) and kept in ``feature_cache`` while the run scores methods
    with the same projections and transform: each encoder's matrices are scored against its own and every other
    encoder's. Only that variant's are kept (the run goes method by method): at most encoders x projections
    float64 k x k matrices, k <= ``DENSE_REPORT_ANCHORS``."""
    if feature_cache is None:
        return anchor_space(torch.from_numpy(anchors), method.projections, method.abs_transform)
    variant = (tuple(method.projections), method.abs_transform)
    held = feature_cache.get("anchor_operands")
    if held is None or held[0] != variant:
        held = feature_cache["anchor_operands"] = (variant, {})
    store = held[1]
    if id(anchors) not in store or store[id(anchors)][0] is not anchors:  # kept alongside: the id is not reused
        matrices = anchor_space(torch.from_numpy(anchors), method.projections, method.abs_transform)
        store[id(anchors)] = (anchors, {name: cka_operand(matrix) for name, matrix in matrices.items()})
    return store[id(anchors)][1]


def attach_weights(
    method: MethodSpec,
    train_anchors: np.ndarray,
    test_anchors: np.ndarray,
    memo: dict | None = None,
    feature_cache: dict | None = None,
) -> tuple[list[float] | None, dict[str, float] | None]:
    """Subspace weights chosen from the anchors alone (no labels of the new encoder): CKA per projection between
    the two encoders' anchor-vs-anchor matrices, then ``select_subspaces``. (None, None) when the method has no
    ``select``. ``memo``: see :func:`pair_memo`; ``feature_cache``: each encoder's anchor matrices, centred, with
    their self-products, kept for the run (the same scores, computed once per encoder instead of once per pair).
    Past ``DENSE_REPORT_ANCHORS`` anchors, the scores an attach computes (``projection_scores``: the cosine CKA from
    D x D products, the others on that many evenly spaced anchors), so that the cost stays linear in the anchor
    count."""
    if method.kind != "relative" or method.select is None:
        return None, None
    key = ("subspace_scores", tuple(method.projections), method.abs_transform)
    if memo is None or key not in memo:
        if len(train_anchors) > DENSE_REPORT_ANCHORS:  # k x k matrices, k^3 CKA: an attach's linear-time scores
            source, target = torch.from_numpy(train_anchors), torch.from_numpy(test_anchors)
            scores, _ = projection_scores(source, target, method.projections, method.abs_transform)
        else:
            source = _anchor_operands(train_anchors, method, feature_cache)
            target = source  # the same encoder: the same anchors give the same matrices (computed once)
            if test_anchors is not train_anchors:
                target = _anchor_operands(test_anchors, method, feature_cache)
            scores = subspace_scores(source, target)
        if memo is not None:
            memo[key] = scores
    else:
        scores = memo[key]
    weights = select_subspaces(scores, method.projections, method.select.tolerance, method.select.mode)
    return weights, dict(scores)


def translated(
    test_embeddings: np.ndarray, test_anchors: np.ndarray, train_anchors: np.ndarray, memo: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The translation baseline's inputs: the test encoder's embeddings and anchors through the orthogonal map
    fitted on the anchors (Procrustes onto the training encoder's). Both depend on the pair alone: ``memo``."""
    key = ("translated", id(test_embeddings))
    if memo is not None and key in memo and memo[key][0] is test_embeddings:
        return memo[key][1], memo[key][2]
    mapped = fit_orthogonal(torch.from_numpy(test_anchors), torch.from_numpy(train_anchors))
    embeddings = mapped(torch.from_numpy(test_embeddings)).float().numpy()
    anchors = mapped(torch.from_numpy(test_anchors)).float().numpy()
    if memo is not None:  # the array is kept alongside, so its id cannot be reused while cached
        memo[key] = (test_embeddings, embeddings, anchors)
    return embeddings, anchors


class _OwnPass:
    """A head on its own encoder's test rows (with given weights), for the run: the logits of its same-encoder cell
    and r(z), the reference its latent scores compare every other encoder with (prepared when first asked for)."""

    def __init__(self, embeddings: np.ndarray, anchors: np.ndarray, logits: np.ndarray | None, rows: np.ndarray):
        self.embeddings, self.anchors, self.logits, self.rows = embeddings, anchors, logits, rows
        self.spaces: dict[str, LatentSpace] = {}

    def space(self, precision: str) -> LatentSpace:
        if precision not in self.spaces:
            self.spaces[precision] = latent_space(torch.from_numpy(self.rows), precision)
        return self.spaces[precision]


def _own_pass(
    head: torch.nn.Module,
    embeddings: np.ndarray,
    anchors: np.ndarray,
    weights: list[float] | None,
    limit: int,
    feature_cache: dict | None,
    need_logits: bool,
) -> _OwnPass:
    """The head on its own encoder's test rows, kept per head for the run (weakly: a head that is dropped takes it
    along) and redone if the head's parameters changed since (their version counters). When ``limit`` covers every
    row, one pass gives both the logits and r(z) (:func:`predict_with_representation`: the same numbers as the two
    calls), so a head's same-encoder cell and the reference of its latent scores share it, whichever comes first."""
    key = (
        id(embeddings),
        id(anchors),
        None if weights is None else tuple(weights),
        limit,
        tuple(p._version for p in head.parameters()),
    )
    store = None
    if feature_cache is not None:
        store = feature_cache.setdefault("references", weakref.WeakKeyDictionary()).setdefault(head, {})
        found = store.get(key)
        same_rows = found is not None and found.embeddings is embeddings and found.anchors is anchors
        if same_rows and (found.logits is not None or not need_logits):
            return found
    if limit >= len(embeddings):
        logits, rows = predict_with_representation(head, embeddings, anchors, weights, limit, feature_cache)
    else:
        logits = predict(head, embeddings, anchors, weights, feature_cache=feature_cache) if need_logits else None
        rows = predict(head, embeddings, anchors, weights, represent=True, feature_cache=feature_cache, limit=limit)
    done = _OwnPass(embeddings, anchors, logits, rows)
    if store is not None:  # the arrays are kept alongside, so their ids cannot be reused while cached
        store[key] = done
    return done


def reference_space(
    head: torch.nn.Module,
    embeddings: np.ndarray,
    anchors: np.ndarray,
    weights: list[float] | None,
    limit: int,
    feature_cache: dict | None,
    precision: str = "float64",
) -> LatentSpace:
    """r(z) of the head on its own encoder's test rows, prepared for the latent scores: the same for every new encoder
    it is compared with (with the same weights), so it is kept per head for the run (:func:`_own_pass`)."""
    return _own_pass(head, embeddings, anchors, weights, limit, feature_cache, False).space(precision)


def evaluate_pair(
    head: torch.nn.Module,
    method: MethodSpec,
    train_embeddings_test: np.ndarray,
    train_anchors: np.ndarray,
    test_embeddings: np.ndarray,
    test_anchors: np.ndarray,
    labels: np.ndarray,
    latent: LatentSpec,
    feature_cache: dict | None = None,
) -> dict:
    """Scores of a head trained on encoder A, fed encoder B's test embeddings and anchors (A == B allowed)."""
    if method.kind == "absolute" and train_embeddings_test.shape[1] != test_embeddings.shape[1]:
        return {
            "skipped": f"absolute baseline: widths differ ({train_embeddings_test.shape[1]} vs "
            f"{test_embeddings.shape[1]}), a head cannot even be applied"
        }
    memo = pair_memo(feature_cache, train_anchors, test_anchors)
    weights, scores = attach_weights(method, train_anchors, test_anchors, memo, feature_cache)
    alignment, reference = None, None
    same = train_embeddings_test is test_embeddings
    n = min(latent.max_samples, len(labels))
    if method.kind == "translation" and not same:  # absolute head + orthogonal map fitted on the anchors
        test_embeddings, test_anchors = translated(test_embeddings, test_anchors, train_anchors, memo)
    elif getattr(head, "aligned", False):  # the default head: map + components from the anchors (identity on A)
        head.reset_alignment(train_anchors.shape[1])
        if not same:  # r(z) on A with A's own (identity) map and native relative space, before the map is fitted
            reference = reference_space(
                head, train_embeddings_test, train_anchors, None, n, feature_cache, latent.precision
            )
            weights, alignment = align_head(
                head, torch.from_numpy(train_anchors), torch.from_numpy(test_anchors), memo=memo
            )
    if same and (feature_cache is None or n < len(test_embeddings)):
        logits = predict(head, test_embeddings, test_anchors, weights, feature_cache=feature_cache)
    elif same:  # r(z) is compared with itself (every latent score is 1): kept as the head's reference for the run
        logits = _own_pass(head, test_embeddings, test_anchors, weights, n, feature_cache, True).logits
    else:
        logits, new = predict_with_representation(head, test_embeddings, test_anchors, weights, n, feature_cache)
    result = classification_scores(logits.argmax(axis=1), labels)
    if alignment is not None:
        result["alignment"] = alignment  # map, residuals, fit, relative space, stitch score (label-free)
        result["component_weights"] = weights
    elif weights is not None:
        result["subspace_weights"] = dict(zip(method.projections, weights))
        result["subspace_scores"] = scores
    if same:
        return result
    if reference is None:
        reference = reference_space(
            head, train_embeddings_test, train_anchors, weights, n, feature_cache, latent.precision
        )
    result["latent"] = latent_scores(head, reference, new, min(latent.k, n - 1), feature_cache)
    return result


def reads_no_trained_state(head: torch.nn.Module) -> bool:
    """Whether r(z) of ``head`` reads none of its trained parameters or buffers (all are the classifier's, e.g.
    ``subspace_norm: none`` with a concat / sum aggregation): r(z) is then a function of the embeddings, anchors
    and subspace weights alone, so the heads of every seed give the same rows. A LayerNorm / BatchNorm subspace
    norm, an aggregation with weights, the aligned component or the absolute head's LayerNorm make it per head."""
    classifier = getattr(head, "classifier", None)
    if getattr(head, "aligned", False) or not hasattr(head, "norms") or classifier is None:
        return False
    own = {id(t) for t in (*classifier.parameters(), *classifier.buffers())}
    return all(id(t) in own for t in (*head.parameters(), *head.buffers()))


def _digest(rows: np.ndarray) -> str:
    rows = np.ascontiguousarray(rows)
    return f"{rows.dtype}{rows.shape}" + hashlib.sha256(rows.view(np.uint8)).hexdigest()


def latent_scores(
    head: torch.nn.Module, reference: LatentSpace, new: np.ndarray, k: int, feature_cache: dict | None
) -> dict:
    """The latent similarity of the reference r(z) and the new encoder's. When the head's r(z) reads no trained
    state (:func:`reads_no_trained_state`) the same two spaces recur for every seed: their scores are kept for the
    run, keyed on the content of both (sha256 of the rows) and ``k``; other heads' rows are not hashed."""
    store = key = None
    if feature_cache is not None and reads_no_trained_state(head):
        store = feature_cache.setdefault("latent_scores", {})
        key = (_digest(reference.rows.numpy()), _digest(new), k, reference.precision)
        if key in store:
            return dict(store[key])
    scores = latent_similarity(reference, torch.from_numpy(new), k=k)  # in the reference's precision
    if store is not None:
        store[key] = dict(scores)
    return scores
