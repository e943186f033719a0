"""Keep your vector index, change your encoder: :class:`IndexBridge`.

Fitted on texts embedded by both encoders (the old one that built the index, the new one that replaces it), it
holds two maps, each the rotation of unit vectors, a ridge map shrunk toward a prior, plain ridge or a blend of the
rotation and plain ridge (``maps.py``), the one that retrieves best on cross-fitted held-out pairs (``_fit_side``,
``translation="best"``; ``"attach-auto" / "attach-orthogonal" / "attach-affine"`` use the heads' attach-time
``heads.translation.fit_translation`` instead, which docs/retrieval.md compares):

* the query map, new -> old: ``encode(queries)`` embeds with the new encoder and returns vectors that search the
  index the old encoder built;
* the migrate map, old -> new: ``migrate(old_vectors)`` rewrites stored vectors, in batches, into the new space.

Saved and pushed in the head-only format (``heads.format`` / ``heads.hub``): the paired texts are the anchors, the
old encoder's embeddings of them the anchor space, the two maps the weights, and ``index_bridge`` in the config names
both encoders (revision, pooling, normalisation, prompts) and the label-free expected retention.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .encoders import PROBE_TEXTS, PROBE_TOLERANCE, IndexBridgeError, TextEncoder, load_text_encoder
from .estimate import (
    RetentionEstimate,
    _unit,
    corpus_size,
    cross_fitted_mapped,
    hits_of_mapped,
    paired_gain,
    retention_from_hits,
)
from .evaluate import RetentionMeasurement, measure_embeddings, measure_retention
from .inputs import (
    MIN_PAIRS,
    check_batch_size,
    check_pair_count,
    finite,
    gate_options,
    numeric,
    query_texts,
    text_list,
    whole_number,
)
from .maps import BLEND_MEMBERS, BlendedMap, LinearMap, blend_kind, blend_weight, fit_candidate

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo


class IndexBridge:
    """Search an index built with ``old`` using queries embedded by ``new`` (``encode``), or move its stored
    vectors into ``new``'s space (``migrate``). Fit with :meth:`fit` (encoders + texts) or
    :meth:`fit_embeddings` (paired vectors you already have); load with :meth:`from_pretrained`."""

    def __init__(
        self,
        query_map: LinearMap | BlendedMap,
        migrate_map: LinearMap | BlendedMap,
        old: dict,
        new: dict,
        *,
        texts: Sequence[str] | None = None,
        old_vectors: np.ndarray | None = None,
        retention: dict[str, RetentionEstimate] | None = None,
        encoder: TextEncoder | None = None,
        source: str | None = None,
        revision: str | None = None,
    ):
        self.query_map, self.migrate_map = query_map, migrate_map
        self.old, self.new = dict(old), dict(new)  # encoder records: name_or_path, revision, hidden_size, settings
        self.texts = list(texts) if texts is not None else None
        self.old_vectors = old_vectors
        self.retention = dict(retention or {})
        self.encoder = encoder  # the new encoder, loaded on first encode() when not given
        self.source, self.revision = source, revision

    # --------------------------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        old_encoder: Any,
        new_encoder: Any,
        texts: Sequence[str],
        *,
        translation: str = "best",
        folds: int = 5,
        batch_size: int = 32,
        k: int = 10,
        seed: int = 0,
    ) -> IndexBridge:
        """Embed ``texts`` (unlabelled, ideally a sample of the indexed corpus and of typical queries) with both
        encoders (Hub ids, folders or ``SentenceTransformer`` objects) and fit the bridge on them. ``translation``:
        ``"best"`` keeps the best of every candidate map by the label-free score, or one map by name
        (:data:`TRANSLATIONS`)."""
        translation = translation_name(translation)  # a bad name fails before the encoders embed anything
        texts = text_list("texts", texts, "texts from your corpus to fit on")
        check_pair_count(len(texts))  # so does a sample too small to fit on
        check_batch_size(batch_size)
        whole_number("k", k)
        whole_number("seed", seed, 0)
        if len(set(texts)) < MIN_PAIRS:  # copies of a few texts: a degenerate fit that estimates itself perfect
            raise IndexBridgeError(
                f"{len(texts)} paired texts but only {len(set(texts))} distinct ones: fit on at least {MIN_PAIRS} "
                "different texts (a few hundred to 2,000 from your own corpus)"
            )
        old, new = load_text_encoder(old_encoder), load_text_encoder(new_encoder)
        old_docs = old.encode(texts, "document", batch_size)
        new_docs = new.encode(texts, "document", batch_size)
        prompted = any(e.prompt_name("query") != e.prompt_name("document") for e in (old, new))
        bridge = cls.fit_embeddings(
            old_docs,
            new_docs,
            old_queries=old.encode(texts, "query", batch_size) if prompted else None,
            new_queries=new.encode(texts, "query", batch_size) if prompted else None,
            texts=texts,
            old_encoder=old.record(),
            new_encoder=new.record(),
            translation=translation,
            folds=folds,
            k=k,
            seed=seed,
        )
        bridge.new["probe"] = bridge._probe(new_docs[:PROBE_TEXTS])  # this package embedded them: reproducible
        bridge.encoder = new
        return bridge

    @classmethod
    def fit_embeddings(
        cls,
        old_vectors: np.ndarray,
        new_vectors: np.ndarray,
        *,
        old_queries: np.ndarray | None = None,
        new_queries: np.ndarray | None = None,
        texts: Sequence[str] | None = None,
        old_encoder: dict | None = None,
        new_encoder: dict | None = None,
        translation: str = "best",
        folds: int = 5,
        k: int = 10,
        seed: int = 0,
        estimate: bool = True,
    ) -> IndexBridge:
        """Fit on paired vectors: row i of ``old_vectors`` and ``new_vectors`` embed the same text as stored
        documents (and, for encoders with a query prompt, ``old_queries`` / ``new_queries`` as queries; the query
        map is then fitted between those). ``old_encoder`` / ``new_encoder``: records for the config and card
        (``name_or_path``, ``revision``, ``normalize``, ``prompts``...). ``translation``: as in :meth:`fit`."""
        kinds = translation_kinds(translation_name(translation))
        whole_number("k", k)
        whole_number("seed", seed, 0)
        old_vectors, new_vectors = finite("old_vectors", old_vectors), finite("new_vectors", new_vectors)
        if old_vectors.shape[0] != new_vectors.shape[0]:
            raise IndexBridgeError(
                f"paired vectors must have one row per text in both spaces: old has {old_vectors.shape[0]} rows, "
                f"new has {new_vectors.shape[0]}"
            )
        check_pair_count(old_vectors.shape[0])
        if texts is not None:  # the saved anchors: strings (None or a number saved, then refused to load)
            texts = text_list("texts", texts, "paired texts, one per row of the vectors")
        if texts is not None and len(texts) != old_vectors.shape[0]:
            raise IndexBridgeError(f"{len(texts)} texts for {old_vectors.shape[0]} paired vectors")
        old = _record(old_encoder, old_vectors, "old")
        new = _record(new_encoder, new_vectors, "new")
        if old_queries is not None:
            old["query_space"] = "separate"  # the old index's queries had their own prompt
        old_q = old_vectors if old_queries is None else finite("old_queries", old_queries)
        new_q = new_vectors if new_queries is None else finite("new_queries", new_queries)
        maps, retention = {}, {}
        for side, (src, tgt, norm) in {
            "query": (new_q, old_q, old["normalize"]),
            "migrate": (old_vectors, new_vectors, new["normalize"]),
        }.items():
            maps[side], retention[side] = _fit_side(src, tgt, norm, side, kinds, folds, k, seed, estimate)
        retention = {side: est for side, est in retention.items() if est is not None}
        query_map, migrate_map = maps["query"], maps["migrate"]
        return cls(query_map, migrate_map, old, new, texts=texts, old_vectors=old_vectors, retention=retention)

    # ------------------------------------------------------------------------------------------------- apply
    def _probe(self, new_vectors: np.ndarray) -> dict:
        """The encoder check's record: the mean cosine between the first paired texts' new vectors mapped into the
        index and the stored old vectors of the same texts."""
        mapped = self.query_map(new_vectors)
        old = np.asarray(self.old_vectors[: len(mapped)], np.float32)
        cosine = (_unit(mapped) * _unit(old)).sum(1).mean()
        return {"texts": len(mapped), "mapped_cosine": round(float(cosine), 6)}

    def _check_probe(self, encoder: TextEncoder) -> None:
        """The same name, another model: a fine-tuned or re-pooled copy saved under the recorded name (or another
        organisation's model of that name) passes the name and width checks, and its vectors would search the index
        as nonsense. So the given encoder embeds the first paired texts again; mapped into the index they must meet
        their stored old vectors as the fitted encoder's did (``probe`` in the new encoder's record, written by
        ``fit`` and ``refit``: the package embedded those texts itself). A bridge without the record is not checked."""
        probe = self.new.get("probe")
        if not probe or self.texts is None or self.old_vectors is None:
            return
        got = self._probe(encoder.encode(self.texts[: probe["texts"]], "document"))["mapped_cosine"]
        if got < probe["mapped_cosine"] - PROBE_TOLERANCE:
            raise IndexBridgeError(
                f"{encoder.name_or_path} is not the encoder this bridge was fitted for, though it has its name and "
                f"width: its vectors of the bridge's first {probe['texts']} paired texts, mapped into the index, meet "
                f"the stored ones at a mean cosine of {got:.3f}, the fitted encoder's at {probe['mapped_cosine']:.3f} "
                "(another model, revision, pooling or max_seq_length). Pass the encoder the bridge was fitted for, or "
                "refit the bridge for this one (IndexBridge.from_pretrained(..., encoder=it, refit=True))"
            )

    def _new_encoder(self) -> TextEncoder:
        if self.encoder is None:
            self.encoder = load_text_encoder(self.new["name_or_path"], self.new.get("revision"))
            self._check_encoder(self.encoder)
        return self.encoder

    def encode(self, queries: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """float32 (n, old width) query vectors for the OLD index: the new encoder's query embedding, mapped."""
        single = isinstance(queries, str)
        texts = query_texts(queries)  # before the encoder loads: sentence-transformers' errors name no query
        check_batch_size(batch_size)
        vectors = self.map_queries(self._new_encoder().encode(texts, "query", batch_size))
        return vectors[0] if single else vectors

    def map_queries(self, new_query_vectors: np.ndarray) -> np.ndarray:
        """The query map alone, for query vectors the new encoder already produced."""
        x = finite("query vectors", np.atleast_2d(numeric("query vectors", new_query_vectors)))
        self._check_width(x, self.new, "query vectors", "new")
        return self.query_map(x)

    def migrate(self, old_vectors: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """float32 (n, new width): stored old vectors rewritten into the new encoder's space, ``batch_size`` rows at
        a time (a ``np.memmap`` is read batch by batch), for an index the new encoder then queries directly."""
        old_vectors = numeric("stored vectors", old_vectors) if not isinstance(old_vectors, np.ndarray) else old_vectors
        batches = self.migrate_batches(old_vectors, batch_size)  # checks the shape, width and batch size first
        out = np.empty((old_vectors.shape[0], self.new["hidden_size"]), dtype=np.float32)
        start = 0
        for batch in batches:
            out[start : start + len(batch)] = batch
            start += len(batch)
        return out

    def migrate_batches(self, old_vectors: np.ndarray | Iterable[np.ndarray], batch_size: int = 65536) -> Iterator:
        """Yield migrated batches: from an array (``batch_size`` rows each) or from an iterable of batches (e.g.
        pages read from a vector store), so nothing larger than one batch is ever held. An array's shape and width
        and the batch size are checked here, before the first batch: a 1-D array sliced into batches would read
        as vectors of the batch's width, and a batch size below 1 would yield nothing (an index of empty rows)."""
        if isinstance(old_vectors, (str, bytes)) or not isinstance(old_vectors, (np.ndarray, Iterable)):
            raise IndexBridgeError(
                f"stored vectors must be a 2-D array (rows, width) or an iterable of such batches, got "
                f"{type(old_vectors).__name__}"
            )
        if isinstance(old_vectors, np.ndarray):
            numeric("stored vectors", old_vectors[:0])  # an object / string array fails here, not in a batch
            if old_vectors.ndim != 2:
                raise IndexBridgeError(
                    f"stored vectors must be a 2-D array (rows, width), got shape {old_vectors.shape}"
                    + (f" (one vector: reshape it to (1, {old_vectors.shape[0]}))" if old_vectors.ndim == 1 else "")
                )
            self._check_width(old_vectors, self.old, "stored vectors", "old")
        check_batch_size(batch_size)
        return self._migrated(old_vectors, int(batch_size))

    def _migrated(self, old_vectors: np.ndarray | Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
        batches = (
            (old_vectors[i : i + batch_size] for i in range(0, len(old_vectors), batch_size))
            if isinstance(old_vectors, np.ndarray)
            else old_vectors
        )
        start = 0  # the batch's first row among all the stored vectors, named by an error
        for batch in batches:
            batch = finite("stored vectors", np.atleast_2d(numeric("stored vectors", batch)), start)
            self._check_width(batch, self.old, "stored vectors", "old")
            start += len(batch)
            yield self.migrate_map(batch)

    def _check_width(self, x: np.ndarray, record: dict, what: str, side: str) -> None:
        if x.shape[1] != record["hidden_size"]:
            other = self.new if side == "old" else self.old
            hint = (
                f" (they look like {other['name_or_path']}'s {other['hidden_size']}-d vectors: "
                f"{'encode()/map_queries' if side == 'new' else 'migrate'} takes the {side} encoder's)"
                if x.shape[1] == other["hidden_size"] and other["hidden_size"] != record["hidden_size"]
                else ""
            )
            raise IndexBridgeError(
                f"{what} are {x.shape[1]}-d but this bridge's {side} encoder {record['name_or_path']} is "
                f"{record['hidden_size']}-d{hint}"
            )

    def _check_encoder(self, encoder: TextEncoder) -> None:
        if encoder.dim != self.new["hidden_size"]:
            raise IndexBridgeError(
                f"this bridge maps {self.new['name_or_path']} ({self.new['hidden_size']}-d) but the encoder given, "
                f"{encoder.name_or_path}, is {encoder.dim}-d: pass the encoder the bridge was fitted for, or refit "
                "the bridge for it (IndexBridge.from_pretrained(..., encoder=it, refit=True))"
            )
        if _base(encoder.name_or_path) != _base(self.new["name_or_path"]):
            raise IndexBridgeError(
                f"this bridge was fitted for {self.new['name_or_path']} but the encoder given is "
                f"{encoder.name_or_path}: pass that encoder, or refit the bridge on its stored paired texts "
                "(IndexBridge.from_pretrained(..., encoder=it, refit=True))"
            )
        self._check_probe(encoder)

    # --------------------------------------------------------------------------------------------- the gate
    @property
    def expected_retention(self) -> RetentionEstimate | None:
        """The query side's label-free expected retention (see ``estimate``); ``retention['migrate']`` for the other."""
        return self.retention.get("query")

    def gate(self, minimum: float, side: str = "query", bound: str = "estimate") -> RetentionEstimate:
        """Raise ``RetentionGateError`` unless the expected retention of ``side`` reaches ``minimum``."""
        minimum = gate_options(minimum, side, bound)
        if side not in self.retention:
            raise IndexBridgeError(
                f"this bridge holds no {side} retention estimate; refit it (fit_embeddings(estimate=True))"
            )
        self.retention[side].check(minimum, bound)
        return self.retention[side]

    def evaluate(
        self,
        queries: Sequence[str],
        documents: Sequence[str],
        relevant: Sequence | None = None,
        *,
        old_vectors: np.ndarray | None = None,
        k: int = 10,
        confidence: float = 0.95,
        resamples: int = 1000,
        seed: int = 0,
        batch_size: int = 32,
    ) -> RetentionMeasurement:
        """Measured retention on your own labelled queries (what the label-free estimate cannot see: your query
        distribution, which encoder serves your task better). ``documents``: the relevant ones and distractors, a
        sample of the corpus; ``relevant[i]``: query i's relevant document index or indices (default: documents[i]);
        ``old_vectors``: the index's stored vectors of the documents (default: the recorded old encoder embeds
        them). Recall@k, nDCG@k, MRR of the query side, the migrate side and ceiling B (full re-embedding), each
        side's retention with a bootstrap interval over the queries, and the gate: ``.check(minimum, side, bound)``."""
        return measure_retention(
            self,
            queries,
            documents,
            relevant,
            old_vectors=old_vectors,
            k=k,
            confidence=confidence,
            resamples=resamples,
            seed=seed,
            batch_size=batch_size,
        )

    def evaluate_embeddings(
        self,
        new_queries: np.ndarray,
        new_documents: np.ndarray,
        old_vectors: np.ndarray,
        relevant: Sequence | None = None,
        *,
        k: int = 10,
        confidence: float = 0.95,
        resamples: int = 1000,
        seed: int = 0,
    ) -> RetentionMeasurement:
        """:meth:`evaluate` on vectors you already have: the new encoder's query vectors (query prompt) and document
        vectors, and the index's stored vectors of the same documents (as :meth:`fit_embeddings` to :meth:`fit`)."""
        return measure_embeddings(
            self,
            new_queries,
            new_documents,
            old_vectors,
            relevant,
            k=k,
            confidence=confidence,
            resamples=resamples,
            seed=seed,
        )

    # ------------------------------------------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | os.PathLike, repo_id: str | None = None) -> Path:
        """Write the bridge as a head-only folder (atomic; ``hf-bridges head push`` / ``push_to_hub`` upload it)."""
        from ..heads.format import write_head
        from .card import index_card
        from .files import to_head

        head = to_head(self)
        return write_head(head, folder, card=str(index_card(self, head, repo_id)))

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> CommitInfo:
        """Upload the bridge's files to a Hub model repo (created if needed); returns the ``CommitInfo``."""
        from ..heads.hub import push_head_folder

        with tempfile.TemporaryDirectory(prefix="index-bridge-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "bridge", repo_id=repo_id)
            return push_head_folder(
                folder, repo_id, commit_message=kwargs.pop("commit_message", "Upload index bridge"), **kwargs
            )

    @classmethod
    def from_pretrained(
        cls,
        bridge: str | os.PathLike,
        encoder: Any = None,
        *,
        refit: bool = False,
        revision: str | None = None,
        token: str | bool | None = None,
    ) -> IndexBridge:
        """Load a bridge folder or Hub repo. ``encoder``: the new encoder (a ``SentenceTransformer``, Hub id or
        folder; default: the recorded one, loaded on first ``encode``). ``refit=True`` with another encoder embeds
        the stored paired texts with it and refits both maps against the stored old vectors."""
        from ..heads.hub import load_head
        from .files import from_head

        loaded = from_head(load_head(bridge, revision=revision, token=token), cls)
        if encoder is None:
            return loaded
        encoder = load_text_encoder(encoder)
        if refit:
            return loaded.refit(encoder)
        loaded._check_encoder(encoder)
        loaded.encoder = encoder
        return loaded

    def refit(self, new_encoder: Any, translation: str = "best", folds: int = 5) -> IndexBridge:
        """The same index (old vectors of the stored paired texts), another new encoder: embed the texts, refit."""
        translation = translation_name(translation)
        if self.texts is None or self.old_vectors is None:
            raise IndexBridgeError("this bridge holds no paired texts to refit on; fit a new one with IndexBridge.fit")
        encoder = load_text_encoder(new_encoder)
        if encoder.prompt_name("query") != encoder.prompt_name("document") or self.old.get("query_space") == "separate":
            raise IndexBridgeError(
                "refit needs one embedding per text on both sides, but an encoder here embeds queries with their own "
                "prompt: fit a new bridge with IndexBridge.fit(old_encoder, new_encoder, texts)"
            )
        new_vectors = encoder.encode(self.texts, "document")
        bridge = type(self).fit_embeddings(
            self.old_vectors,
            new_vectors,
            texts=self.texts,
            old_encoder=self.old,
            new_encoder=encoder.record(),
            translation=translation,
            folds=folds,
        )
        bridge.new["probe"] = bridge._probe(new_vectors[:PROBE_TEXTS])
        bridge.encoder = encoder
        return bridge

    def __repr__(self) -> str:
        est = self.expected_retention
        return (
            f"IndexBridge(old={self.old['name_or_path']} {self.old['hidden_size']}-d, new={self.new['name_or_path']} "
            f"{self.new['hidden_size']}-d, query map {self.query_map.info.get('map')}, "
            f"{len(self.texts) if self.texts is not None else '?'} paired texts{f', {est}' if est else ''})"
        )


BLENDS = (0.25, 0.5, 0.75)  # the rotation's weight in a blend with plain ridge (``maps.BlendedMap``)
# ties go to the earlier, simpler map; "contrastive": the rotation fine-tuned for ranking (maps.fit_contrastive)
CANDIDATES = ("rotation", "prior", "ridge", *(blend_kind(w) for w in BLENDS), "contrastive")
# ``translation=`` names (IndexBridge.fit / refit / fit_embeddings, ``hf-bridges index fit --translation``) -> the
# candidate names the fit records use (``info["candidates"]``, ``info["selection"]["kept"]``, docs' tables)
TRANSLATIONS = {
    "best": None,  # the default: every candidate below but the attach-time maps, the best label-free score kept
    "rotation": "rotation",
    "prior-ridge": "prior",  # ridge toward a prior (recorded as "prior")
    "ridge": "ridge",  # plain ridge, aecp's RidgeMapping
    **{blend_kind(w): blend_kind(w) for w in BLENDS},  # "blend 0.5": 0.5 rotation + 0.5 plain ridge
    "contrastive": "contrastive",  # the rotation fine-tuned by InfoNCE over the paired texts
    "attach-auto": "auto",  # the heads' attach-time map (heads.translation), orthogonal or affine by k-fold residual
    "attach-orthogonal": "orthogonal",
    "attach-affine": "affine",
}
# Names of 0.3 and earlier, read with a FutureWarning until 0.5: "prior" meant the best of all candidates (not the
# prior ridge alone, which had no name) and "auto" the heads' attach-time map (not an automatic choice).
OLD_TRANSLATIONS = {
    "prior": "best",
    "auto": "attach-auto",
    "orthogonal": "attach-orthogonal",
    "affine": "attach-affine",
}


def translation_name(translation: str) -> str:
    """Today's name of a ``translation=`` value (an old one warns, FutureWarning at the caller's call); an unknown
    name is an ``IndexBridgeError`` listing the valid ones."""
    if translation in OLD_TRANSLATIONS:
        new = OLD_TRANSLATIONS[translation]
        best = " (the best of all candidate maps; 'prior-ridge' is the ridge toward a prior alone)"
        warnings.warn(
            f"translation={translation!r} is now called {new!r}{best if new == 'best' else ''}; "
            "the old name is read until hf_bridges 0.5",
            FutureWarning,
            stacklevel=3,
        )
        return new
    if translation not in TRANSLATIONS:
        from ..modeling.registry import did_you_mean

        raise IndexBridgeError(
            f"unknown translation {translation!r}{did_you_mean(translation, TRANSLATIONS)}; valid: {list(TRANSLATIONS)}"
        )
    return translation


def translation_kinds(translation: str) -> list[str]:
    """The candidate maps a (current) ``translation=`` name fits: one, or every one of ``CANDIDATES`` for best."""
    return list(CANDIDATES) if translation == "best" else [TRANSLATIONS[translation]]


def _fit_side(
    src: np.ndarray, tgt: np.ndarray, norm: bool, side: str, kinds: list[str], folds: int, k: int, seed: int, estimate
) -> tuple[LinearMap | BlendedMap, RetentionEstimate | None]:
    """One side's map and its expected retention. Several ``kinds`` (``translation="best"``): the rotation (no
    parameter), the ridge shrunk toward a prior, plain ridge (aecp's map) and blends of the rotation with plain ridge
    are scored on the same cross-fitted paired texts, and the best is kept. The score: the share of texts whose
    pseudo-relevant text (both encoders' cosines, ``estimate.cross_fitted_hits``' "both") is in the top ``k``, plus
    the mean reciprocal rank of each text's own pair ("self": one text seen by both encoders, the known-item view;
    added after ``benchmarks/retrieval_selection.py``, docs/retrieval.md). A blend's held-out vectors are the blend of
    its members' held-out vectors (one set of fits serves every weight). The expected retention is the kept map's
    "both" hits over re-embedding's on those texts."""
    if not estimate:
        return fit_candidate(src, tgt, norm, kinds[0], folds), None  # "best" unscored: the rotation
    blends = {c: blend_weight(c) for c in kinds if blend_weight(c) is not None}
    members = [c for c in kinds if c not in blends] + [m for m in BLEND_MEMBERS if blends and m not in kinds]
    mapped = {}
    for kind in members:

        def fitter(s, t, kind=kind):
            return LinearMap.fit(s, t, norm, kind, folds)

        mapped[kind] = _unit(cross_fitted_mapped(src, tgt, fitter, k=k, folds=folds, seed=seed))
    for kind, weight in blends.items():
        mapped[kind] = _unit(weight * mapped[BLEND_MEMBERS[0]] + (1 - weight) * mapped[BLEND_MEMBERS[1]])
    hits = {c: hits_of_mapped(mapped[c], src, tgt, side, k=k, seed=seed) for c in kinds}
    per_text = {c: h["both"] + h["self"] for c, h in hits.items()}
    scores = {c: round(float(v.mean()), 10) for c, v in per_text.items()}  # float noise breaks no tie
    kind = max(kinds, key=lambda c: (scores[c], -kinds.index(c)))
    fitted = fit_candidate(src, tgt, norm, kind, folds)
    n_folds = max(2, min(folds, src.shape[0] // max(2 * k, 10)))
    if len(kinds) > 1:
        fitted.info["candidates"] = {c: round(v, 4) for c, v in scores.items()}
        gain, bound = paired_gain(per_text[kind], per_text["rotation"])
        fitted.info["selection"] = {
            "kept": kind,
            "score": f"both@{k} + self-MRR",
            "gain_over_rotation": round(gain, 4),
            "gain_lower_bound": round(bound, 4),
        }
    est = retention_from_hits(hits[kind]["both"], reembed=hits[kind]["reembed_both"], k=k, folds=n_folds, seed=seed)
    est.corpus, est.reference = corpus_size(src.shape[0]), "both / reembed"
    return fitted, est


# a Hugging Face cache snapshot folder (what snapshot_download returns): .../models--org--name/snapshots/<commit>
SNAPSHOT_FOLDER = re.compile(r"models--([^/\\]+)[/\\]snapshots[/\\][^/\\]+[/\\]?$")


def _base(name: str | None) -> str:
    """The model's name without its namespace; a cache snapshot folder's is its repo's (not the commit hash)."""
    name = str(name or "")
    snapshot = SNAPSHOT_FOLDER.search(name)
    if snapshot:
        return snapshot.group(1).split("--")[-1]
    return name.rstrip("/").split("/")[-1]


def _record(record: dict | None, vectors: np.ndarray, side: str) -> dict:
    """An encoder record with the width checked against its vectors and ``normalize`` read off them if unknown."""
    record = dict(record or {})
    width = vectors.shape[1]
    if record.get("hidden_size") not in (None, width):
        raise IndexBridgeError(
            f"the {side} vectors are {width}-d but the {side} encoder {record.get('name_or_path')} is "
            f"{record['hidden_size']}-d: the vectors do not come from that encoder"
        )
    record["hidden_size"] = width
    record.setdefault("name_or_path", f"an unnamed {side} encoder")
    if record.get("normalize") is None:
        record["normalize"] = bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3))
    return record
