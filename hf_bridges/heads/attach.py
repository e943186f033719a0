"""Attach a head-only bridge to a new encoder: ``from_encoder(encoder, head=...)``.

The head's raw anchors are embedded by the new encoder; an aligned head gets its translation fitted on them
(``compatibility.align_head``), a relative head its label-free stitch report and optional subspace selection; the
stitched model records where the head came from (``config.head_source``). Needs the installed package, like
``hub.py``; the model classes reach it through a lazy import.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..building.arguments import warn_degenerate_anchors
from ..logging import get_logger, user_stacklevel
from ..modeling.configuration_bridge import HeadConfig
from .anchor_cache import (
    TokenRecord,
    anchor_cuts,
    cache_root,
    fill_anchor_embeddings,
    read_tokens,
    store_digest,
    tokenizer_identity,
    tokens_key,
    write_tokens,
)
from .compatibility import (
    ALIGNED_THRESHOLD,
    DEFAULT_THRESHOLD,
    StitchReport,
    compute_stitch_report,
    fit_bridge_alignment,
    select_subspaces,
    weighted_score,
)
from .estimate import estimate_for_attach
from .format import BridgeHead, HeadFormatError, tokenizer_fingerprint
from .hub import HeadAttachError, PathLike, load_head

if TYPE_CHECKING:
    from ..modeling.modeling_bridge import BridgePreTrainedModel

# What an encoder takes as its main input tells its modality (transformers' ``main_input_name``).
logger = get_logger(__name__)

INPUT_MODALITY = {"input_ids": "text", "pixel_values": "image", "input_values": "audio", "input_features": "audio"}


def encoder_modality(encoder: Any) -> str:
    return INPUT_MODALITY.get(getattr(encoder, "main_input_name", "input_ids"), "unknown")


FINGERPRINT_TOKENS = 512  # the head's tokenizer fingerprint reads at most this many raw tokens per anchor


def anchor_token_ids(tokenizer: Any, anchors: list, offsets: bool = False) -> Any:
    """The raw anchors' token ids as the head's tokenizer fingerprint reads them (no prefix, no special tokens, at
    most 512); with ``offsets``, also their character spans (a fast tokenizer's ``offset_mapping``) and its
    ``Encoding`` objects (what :class:`AnchorTokens` derives the bridge's inputs from)."""
    encoded = tokenizer(
        [str(a) for a in anchors],
        add_special_tokens=False,
        truncation=True,
        max_length=FINGERPRINT_TOKENS,
        **({"return_offsets_mapping": True} if offsets else {}),
    )
    if not offsets:
        return encoded["input_ids"]
    return encoded["input_ids"], encoded["offset_mapping"], encoded.encodings


def _unknown_counts(tokenizer, ids: list) -> tuple[int | None, int | None]:
    """``(unknown tokens, tokens)`` in the first 256 anchors' ``ids``; ``(None, None)``: no unknown token."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return None, None
    ids = ids[:256]
    return sum(row.count(unk) for row in map(list, ids)), sum(len(row) for row in ids)


def _check_tokenizer(
    tokenizer, unknown: int | None, total: int | None, name: str, source: str, max_unknown: float = 0.5
) -> None:
    """Refuse a tokenizer that cannot represent the anchors (e.g. transformers' empty fallback tokenizer for an
    encoder folder without tokenizer files, which maps every word to the unknown token): ``unknown`` of ``total``
    tokens of the first 256 anchors (:func:`_unknown_counts`; None: the tokenizer has no unknown token)."""
    if unknown is None or total is None:
        return
    if total == 0 or unknown / total > max_unknown:
        raise HeadAttachError(
            f"cannot attach {source} to {name}: its tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) "
            f"maps {unknown} of {total} anchor tokens to the unknown token, so the anchors cannot be embedded. The "
            "encoder's tokenizer files are probably missing: pass tokenizer=... (the tokenizer the encoder was trained with)"
        )


@dataclass
class AnchorTokens:
    """How the attach's tokenizer maps the head's anchors, known before the bridge is built: the fingerprint (None:
    the head records none), checked against the unknown token; from the anchor cache's :class:`TokenRecord` when
    one is there for this pinned tokenizer (no tokenizer call), else from one tokenizer call (issue 21: the anchors
    were tokenised once for this and once for the bridge's inputs; a record leaves only the bridge's, of the
    characters that reach its inputs; without one, the bridge's inputs are derived from this call's encodings,
    :meth:`derived_inputs`, and the texts are not tokenised again)."""

    fingerprint: dict | None
    record: TokenRecord | None  # read from the cache (None: tokenised here)
    counts: tuple  # (unknown, total) of the unknown-token check
    offsets: list | None  # the raw tokens' character spans (tokenised here, to record the cuts)
    root: Path | None
    key: str | None
    encodings: list | None = None  # the fast tokenizer's raw encodings of the whole texts (tokenised here)

    @classmethod
    def read(
        cls,
        tokenizer: Any,
        bundle: BridgeHead,
        name: str,
        source: str,
        root: Path | None,
        key: str | None,
        fresh: bool = False,
    ) -> AnchorTokens:
        recorded = bool(bundle.config.get("tokenizer"))
        record = None if fresh else read_tokens(root, key, len(bundle.anchors))
        if record is not None and (record.anchor_ids_sha256 is not None or not recorded):
            _check_tokenizer(tokenizer, record.unknown, record.total, name, source)
            fingerprint = {"vocab_size": len(tokenizer), "anchor_ids_sha256": record.anchor_ids_sha256}
            return cls(fingerprint if recorded else None, record, (record.unknown, record.total), None, root, key)
        offsets = fingerprint = encodings = None
        if recorded:  # the fingerprint reads every anchor: tokenise them once, for it and the unknown tokens
            with_offsets = bool(getattr(tokenizer, "is_fast", False))
            ids = anchor_token_ids(tokenizer, bundle.anchors, offsets=with_offsets)
            ids, offsets, encodings = ids if with_offsets else (ids, None, None)
            fingerprint = tokenizer_fingerprint(tokenizer, bundle.anchors, ids=ids)
        else:
            ids = anchor_token_ids(tokenizer, bundle.anchors[:256])
        counts = _unknown_counts(tokenizer, ids)
        _check_tokenizer(tokenizer, *counts, name, source)
        return cls(fingerprint, None, counts, offsets, root, key, encodings)

    def cut_texts(self, anchors: list) -> list:
        """The anchors as the bridge tokenises them when the record says where their inputs end (the rest of each
        text never reaches the model); without a record, whole."""
        cuts = self.record.cuts if self.record is not None else None
        if cuts is None:
            return anchors
        return [text if cut is None else str(text)[:cut] for text, cut in zip(anchors, cuts)]

    def prepared_inputs(self, anchors: list, prefix: str | None = None) -> Any:
        """Without a record (a first attach, or a tokenizer passed in) and without a prefix: a callable that
        ``build_bridge`` asks for the anchors' inputs instead of tokenising them again (:meth:`derived_inputs`, from
        the fingerprint's encodings of the whole texts); None: the bridge tokenises the texts itself."""
        if self.record is not None or self.encodings is None or prefix:
            return None

        def inputs(tokenizer: Any, max_seq_length: int, bridge_prefix: str) -> dict | None:
            return None if bridge_prefix else self.derived_inputs(tokenizer, anchors, max_seq_length)

        return inputs

    def confirm(self, bridge: BridgePreTrainedModel, anchors: list) -> bool:
        """After the bridge is built: with a record, its anchor inputs (from the record's cut texts) must be the
        record's (else False: build it again with a fresh :class:`AnchorTokens`); it keeps the whole texts; without
        a record, one is written (the cuts, the inputs' digest) for the next attach."""
        config = bridge.config
        digest = store_digest(bridge.anchors.input_ids, bridge.anchors.attention_mask)
        config.anchors = list(anchors)
        record = self.record
        if record is not None:
            same = (digest, config.max_seq_length, config.input_prefix or "") == (
                record.store_sha256,
                record.max_seq_length,
                record.prefix,
            )
            if not same:
                logger.info("the anchor token record %s does not match the anchor inputs: tokenising again", self.key)
            return same
        if self.root is None or self.key is None:
            return True  # nothing to record: no cache, or a tokenizer it cannot pin
        cuts = anchor_cuts(anchors, self.offsets, config.max_seq_length) if self.offsets is not None else None
        record = TokenRecord(
            anchor_ids_sha256=self.fingerprint["anchor_ids_sha256"] if self.fingerprint else None,
            unknown=self.counts[0],
            total=self.counts[1],
            prefix=config.input_prefix or "",
            max_seq_length=int(config.max_seq_length),
            store_sha256=digest,
            cuts=cuts,
        )
        write_tokens(self.root, self.key, record)
        return True

    def derived_inputs(self, tokenizer: Any, anchors: list, max_seq_length: int, sample: int = 8) -> dict | None:
        """The bridge's anchor inputs (``input_ids`` / ``attention_mask``, padded) without a second tokenizer call:
        derived from the fingerprint's encodings of the whole texts the way a fast tokenizer makes them (its raw
        tokens cut to ``max_seq_length`` less the special tokens, its own post-processor, padding with its pad
        token on its padding side), then checked: the tokenizer's real ``max_length`` call (padded, as the bridge
        makes it) on the ``sample`` longest, ``sample // 2`` shortest and ``sample // 2`` evenly spaced anchors
        must give exactly the derived rows and width. None (the bridge tokenises the whole texts): a left-cutting
        or slow tokenizer, raw tokens that may not reach ``max_seq_length``, or any difference. The encodings are
        consumed (cut in place)."""
        encodings, self.encodings = self.encodings, None
        if encodings is None or getattr(tokenizer, "truncation_side", "right") != "right":
            return None
        backend, pad = getattr(tokenizer, "backend_tokenizer", None), getattr(tokenizer, "pad_token_id", None)
        side = getattr(tokenizer, "padding_side", "right")
        length = int(max_seq_length) - tokenizer.num_special_tokens_to_add(pair=False)
        if backend is None or pad is None or side not in ("left", "right") or not 0 < length <= FINGERPRINT_TOKENS:
            return None
        rows = []
        for encoding in encodings:
            encoding.truncate(length)
            rows.append(backend.post_process(encoding, None, True).ids)
        width = max(len(row) for row in rows)
        ids, mask = [], []
        for row in rows:
            fill = width - len(row)
            ids.append(row + [pad] * fill if side == "right" else [pad] * fill + row)
            mask.append([1] * len(row) + [0] * fill if side == "right" else [0] * fill + [1] * len(row))
        import torch

        derived = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        by_length = sorted(range(len(rows)), key=lambda i: len(self.offsets[i]))  # raw length: the longest rows
        spread = by_length[:: max(1, len(rows) // max(1, sample // 2))][: sample // 2]
        picked = sorted(set(by_length[-sample:] + by_length[: sample // 2] + spread))
        real = tokenizer(
            [str(anchors[i]) for i in picked],
            padding=True,
            truncation=True,
            max_length=int(max_seq_length),
            return_tensors="pt",
        )
        for key, values in derived.items():
            if real[key].shape != values[picked].shape or not torch.equal(real[key], values[picked]):
                logger.info("the anchors' derived inputs differ from the tokenizer's: tokenising the whole texts")
                return None
        return derived


def attach_head(
    cls: type[BridgePreTrainedModel],
    encoder: Any,
    head: PathLike | BridgeHead,
    *,
    tokenizer: Any = None,
    revision: str | None = None,
    encoder_kwargs: dict | None = None,
    head_revision: str | None = None,
    token: str | bool | None = None,
    subspace_selection: str | None = None,
    stitch_threshold: float | None = None,
    translation: str = "auto",
    relative_space: str = "auto",
    anchor_cache: bool | os.PathLike = True,
    **overrides: Any,
) -> BridgePreTrainedModel:
    """Embed the head's stored anchors with ``encoder``, rebuild the same head on top and load its weights.

    ``subspace_selection``: ``None`` keeps the head's subspace weights; ``"auto"`` (= ``"hard"``) keeps only the
    projections whose anchor space agrees best with the training encoder's, ``"soft"`` weights them; both are
    chosen from the anchors alone and stored in ``config.subspace_weights``. ``overrides`` go to the config.

    Aligned heads (the default head): the translation from this encoder into the training encoder's standardised
    space is fitted on the anchors (``translation``: ``auto`` = orthogonal or ridge-affine, whichever has the lower
    k-fold held-out residual; or ``orthogonal`` / ``affine``); when the held-out fit is >= 0.9 the relative
    component reads the mapped embeddings against the training anchors (``relative_space="auto"``, or force
    ``native`` / ``translated``), else the new encoder's own anchors. Every component is kept
    (``subspace_selection="gate"``: the subset with the best anchor prediction agreement). The stitch report and
    ``config.head.alignment`` state the map, residuals, fit, relative space and the stitch score (mean of anchor
    CKA, top-10 neighbour Jaccard and fit; threshold ``ALIGNED_THRESHOLD``). Map and weights are saved with the model.

    ``anchor_cache``: a text encoder loaded here from a Hub id or folder that embedded these exact anchor inputs
    before gets its anchor embeddings from the cache (:mod:`hf_bridges.heads.anchor_cache`; ``False`` embeds
    anyway, a folder moves the cache). With a tokenizer loaded here (not passed in), the cache's token record of
    these anchors gives the fingerprint and the unknown-token counts, and the bridge tokenises only the characters
    of each anchor that reach its inputs, checked against the record (:class:`AnchorTokens`).
    """
    from ..building.loading import load_encoder, load_tokenizer
    from ..building.sentence_transformers import resolve_prompt, st_encoder_settings

    loaded_from = encoder  # what the cache keys on (an in-memory model is never cached)
    tokenizer_loaded_here = tokenizer is None  # only such a tokenizer is pinned by the encoder's snapshot
    bundle = head if isinstance(head, BridgeHead) else load_head(head, revision=head_revision, token=token)
    source = bundle.source or "the head"
    if bundle.config.get("head_class") == "IndexBridge":  # hf_bridges.retrieval: maps vectors, has no head to attach
        raise HeadAttachError(
            f"{source} is an index bridge (it maps query vectors into an existing index), not a head: load it with "
            "hf_bridges.retrieval.IndexBridge.from_pretrained(path_or_repo, encoder=...)"
        )
    if getattr(cls, "_with_classifier", False) and not bundle.has_classifier:
        raise HeadAttachError(
            f"{source} has no classifier (a representation head): attach it with BridgeModel.from_encoder"
        )
    st = st_encoder_settings(encoder, revision)  # a sentence-transformers encoder embeds its own way
    subfolder = st.get("subfolder", "")  # where its Transformer module keeps weights and tokenizer
    if st.get("model") is not None:
        encoder, tokenizer, subfolder = st["model"], tokenizer or st["tokenizer"], ""
    model = load_encoder(encoder, revision, subfolder, **(encoder_kwargs or {}))
    name = encoder if isinstance(encoder, (str, os.PathLike)) else getattr(model, "name_or_path", None)
    name = str(name) if name else f"an in-memory {type(model).__name__}"
    have, want = encoder_modality(model), bundle.config["modality"]
    if want != "features" and have != want:
        raise HeadAttachError(
            f"{source} is a {want} head but {name or type(model).__name__} is {'an' if have[0] in 'aeiou' else 'a'} "
            f"{have} encoder ({type(model).__name__}, main input {model.main_input_name!r}); attach it to a {want} encoder"
        )
    if tokenizer is None and want == "text":
        try:
            tokenizer = load_tokenizer(name, revision, subfolder)
        except OSError as error:
            raise HeadAttachError(f"cannot attach {source} to {name}: {error}") from None
    _check_prefix(bundle, overrides, name, source)
    st_kwargs = {}
    if st:  # its pooling / Normalize / max_seq_length / prompts win over the training encoder's recorded ones
        st_kwargs = {
            "pooling": st["pooling"],
            "normalize_embeddings": st["normalize"],
            "prefix": resolve_prompt(st, overrides.pop("prefix", None), f"sentence-transformers model {name}"),
        }
        if st.get("max_seq_length"):  # the anchors are cut where the head's were, unless this encoder stops sooner
            recorded = bundle.config_kwargs().get("max_seq_length")
            st_kwargs["max_seq_length"] = min(recorded, st["max_seq_length"]) if recorded else st["max_seq_length"]
    kwargs = {**bundle.config_kwargs(), **st_kwargs}
    head_overrides = {key: overrides.pop(key) for key in list(overrides) if key in HeadConfig.field_names()}
    if head_overrides:
        kwargs["head_config"] = kwargs["head_config"].replace(**head_overrides)
    kwargs.update(overrides)
    tokens = None
    if tokenizer is not None and want == "text":
        identity = tokenizer_identity(loaded_from, revision, subfolder, tokenizer, tokenizer_loaded_here)
        root = cache_root(anchor_cache) if identity is not None else None
        key = (
            None
            if root is None
            else tokens_key(identity, bundle.anchors, kwargs.get("prefix"), kwargs.get("max_seq_length"))
        )
        tokens = AnchorTokens.read(tokenizer, bundle, name, source, root, key)

    def build(tokens: AnchorTokens | None):
        prepared = tokens.prepared_inputs(bundle.anchors, kwargs.get("prefix")) if tokens is not None else None
        anchors = bundle.anchors if tokens is None or prepared is not None else tokens.cut_texts(bundle.anchors)
        return cls.from_encoder(
            model,
            anchors=anchors,
            anchor_labels=bundle.anchor_labels,
            tokenizer=tokenizer,
            revision=revision,
            embed_anchors=False,
            **({"anchor_inputs": prepared} if prepared is not None else {}),  # text bridges only
            **kwargs,
        )

    try:
        with warnings.catch_warnings():  # the degenerate-anchor warnings come below, naming the head
            warnings.filterwarnings("ignore", message=r"from_encoder: .*(duplicates|degenerate anchors)")
            bridge = build(tokens)
            if tokens is not None and not tokens.confirm(bridge, bundle.anchors):  # the record's cuts, other inputs
                tokens = AnchorTokens.read(tokenizer, bundle, name, source, tokens.root, tokens.key, fresh=True)
                bridge = build(tokens)
                tokens.confirm(bridge, bundle.anchors)
            fill_anchor_embeddings(bridge, loaded_from, revision, encoder_kwargs, anchor_cache)
    except (IndexError, RuntimeError, ValueError) as error:
        raise HeadAttachError(
            f"the {len(bundle.anchors)} anchors of {source} failed to embed with {name} "
            f"({type(error).__name__}: {error}). Check that the tokenizer belongs to this encoder (same vocabulary) "
            f"and that it accepts max_seq_length={kwargs.get('max_seq_length')}"
        ) from None
    state = dict(bundle.state_dict)
    if bridge.head.classifier is None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        bridge.head.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise HeadFormatError(f"the weights in {source} do not fit the head its config describes: {error}") from None
    bridge.eval()
    config = bridge.config
    if config.head.aligned:
        bridge = _attach_aligned(
            bridge,
            bundle,
            name,
            state,
            subspace_selection,
            stitch_threshold,
            translation,
            relative_space,
            tokenizer=tokenizer,
            source=source,
            fingerprint=tokens.fingerprint if tokens is not None else None,
        )
        return record_head_source(bridge, bundle)
    threshold = DEFAULT_THRESHOLD if stitch_threshold is None else stitch_threshold
    report = _relative_report(bundle, bridge, name, config.subspace_weights, threshold)
    if subspace_selection not in (None, "none"):
        mode = {"auto": "hard", "hard": "hard", "soft": "soft"}.get(subspace_selection)
        if mode is None:
            raise ValueError(f"unknown subspace_selection {subspace_selection!r}; valid: None, 'auto', 'hard', 'soft'")
        weights = select_subspaces(report.selection_scores, bridge.config.projections, mode=mode)
        bridge.config.subspace_weights = weights
        bridge.config.check()
        report.subspace_weights = weights
        report.score = weighted_score(report.per_projection, bridge.config.projections, weights)
        report.notes.append(f"subspace_selection={subspace_selection!r} set config.subspace_weights={weights}")
    fingerprint = tokens.fingerprint if tokens is not None else None
    _publish_report(bridge, report, bundle, tokenizer, name, source, fingerprint=fingerprint)
    return record_head_source(bridge, bundle)


def _relative_report(bundle: BridgeHead, bridge, name: str, weights, threshold: float) -> StitchReport:
    """The anchor-space report of the head's relative subspaces (``weights``: those in use) on the new encoder."""
    config = bridge.config
    return compute_stitch_report(
        bundle.anchor_embeddings,
        bridge.anchor_embeddings,
        config.projections,
        abs_transform=config.abs_transform,
        subspace_norm=config.subspace_norm,
        subspace_weights=weights,
        threshold=threshold,
        training_encoder=bundle.encoder.get("name_or_path") or "an unnamed encoder",
        new_encoder=name,
        warn=False,
    )


def _publish_report(
    bridge,
    report: StitchReport,
    bundle: BridgeHead,
    tokenizer,
    name: str,
    source: str,
    fingerprint: dict | None = None,
) -> None:
    """Check how the new tokenizer maps the anchors, warn once when the report says so, attach it to the model."""
    report = _check_anchor_mapping(report, bundle, tokenizer, bridge, name, source, fingerprint)
    estimate = estimate_for_attach(bridge, bundle)  # label-free expected accuracy (heads/estimate.py)
    report.estimate = estimate.to_dict() if estimate is not None else None
    if report.warning:
        warnings.warn(report.warning, UserWarning, stacklevel=user_stacklevel())
    bridge.stitch_report = report


# ------------------------------------------------------------------------------------- provenance of an attach
def _check_prefix(bundle: BridgeHead, overrides: dict, name: str, source: str) -> None:
    """The head's training prefix is not the new encoder's: warn when the head had one and none was given."""
    if bundle.training_prefix and overrides.get("prefix") is None:
        warnings.warn(
            f"{source} was trained with the input prefix {bundle.training_prefix!r} (its encoder expects it), but "
            f"no prefix was given for {name}: the anchors and inputs are embedded without one. Pass prefix=... with "
            "what this encoder expects (prefix='' for none, which silences this warning)",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def record_head_source(bridge: BridgePreTrainedModel, bundle: BridgeHead) -> BridgePreTrainedModel:
    """Write where the head came from into the stitched model (``config.head_source``, saved in config.json and
    shown by its card): the repo id (None for a local folder), the commit, the stitch report, the training prefix."""
    report = bridge.stitch_report
    if bundle.training_prefix or bridge.config.input_prefix:
        report.notes.append(
            f"the head was trained with input prefix {bundle.training_prefix!r}; this encoder "
            f"gets {bridge.config.input_prefix!r}"
        )
    local = bundle.source is None or os.path.isdir(bundle.source)
    bridge.config.head_source = {
        "repo_id": None if local else bundle.source,
        "revision": bundle.revision,
        "training_prefix": bundle.training_prefix,
        "stitch_report": report.to_dict(),
    }
    return bridge


def _attach_aligned(
    bridge,
    bundle: BridgeHead,
    name: str,
    state: dict,
    subspace_selection: str | None,
    stitch_threshold: float | None,
    translation: str,
    relative_space: str = "auto",
    *,
    tokenizer=None,
    source: str = "the head",
    fingerprint: dict | None = None,
):
    """Fit the aligned map on the anchors, choose the relative space, score and report (see ``attach_head``)."""
    if subspace_selection not in (None, "none", "auto", "gate"):
        raise ValueError(
            f"unknown subspace_selection {subspace_selection!r} for an aligned head; valid: None / 'auto' "
            "/ 'none' (the attach rule: every component kept), 'gate' (keep the component subset whose "
            "anchor predictions agree best with the training encoder's)"
        )
    config = bridge.config
    n = len(config.projections)
    reference_map = (state["aligned_weight"], state["aligned_bias"]) if "aligned_weight" in state else None
    info = fit_bridge_alignment(  # recorded: map, residuals, fit, relative space, stitch score
        bridge,
        (bundle.anchor_embeddings, reference_map),
        translation,
        relative_space,
        gate=subspace_selection == "gate",
    )
    weights = config.subspace_weights
    relative = weights[:n] if sum(weights[:n]) > 0 else None
    threshold = ALIGNED_THRESHOLD if stitch_threshold is None else stitch_threshold
    report = _relative_report(bundle, bridge, name, relative, threshold)
    report.alignment = info
    report.subspace_weights = list(weights)
    report.score = float(info["stitch_score"])
    num_relative = config.head.relative_anchors or len(bundle.anchors)
    extra = len(bundle.anchors) - num_relative
    pairs = f"{num_relative} anchors" + (f" + {extra} alignment inputs" if extra else "")
    report.notes.append(
        f"aligned component: {info['map']} translation fitted on {pairs} "
        f"(held-out fit {info['fit']:.3f}), relative space {info['relative_space']}; "
        f"config.subspace_weights={weights} ({info['components']})"
    )
    _publish_report(bridge, report, bundle, tokenizer, name, source, fingerprint=fingerprint)
    return bridge


# -------------------------------------------------------------------------- anchors the new encoder cannot see
@dataclass
class MismatchedAnchorsReport(StitchReport):
    """A stitch report whose anchors this encoder does not see as the training encoder did (its tokenizer maps
    them to other token ids): never ``compatible``, whatever the score, and the warning says why."""

    anchor_mismatch: str = ""

    @property
    def compatible(self) -> bool:
        return False

    @property
    def warning(self) -> str | None:
        return f"{self.anchor_mismatch} The stitch score ({self.score:.2f}) is not evidence of compatibility here."


def _check_anchor_mapping(
    report: StitchReport, bundle: BridgeHead, tokenizer, bridge, name: str, source: str, fingerprint: dict | None = None
) -> StitchReport:
    """Compare the new tokenizer's mapping of the anchors with the head's record; warn on degenerate anchors.
    ``fingerprint``: :func:`tokenizer_fingerprint` of the anchors with this tokenizer, when the attach has it."""
    where = f"attaching {source} to {name}"  # duplicates are the head's: warned when it was built, not per attach
    warn_degenerate_anchors(bundle.anchors, bridge.anchor_embeddings, where, check_duplicates=False)
    recorded = bundle.config.get("tokenizer")
    if not recorded or tokenizer is None or bundle.config["modality"] != "text":
        return report  # an older head (no fingerprint), or no tokenizer involved
    now = fingerprint or tokenizer_fingerprint(tokenizer, bundle.anchors)
    if now["anchor_ids_sha256"] == recorded.get("anchor_ids_sha256"):
        report.notes.append("the tokenizer maps the anchors to the same token ids as the training tokenizer")
        return report
    if now["vocab_size"] != recorded.get("vocab_size"):
        report.notes.append(
            f"a different tokenizer than in training ({now['vocab_size']} vs "
            f"{recorded.get('vocab_size')} tokens): expected for another encoder family"
        )
        return report
    fields = {key: getattr(report, key) for key in report.__dataclass_fields__}
    return MismatchedAnchorsReport(
        **fields,
        anchor_mismatch=(
            f"The tokenizer of {name} has as many tokens as the one {source} was trained with ({now['vocab_size']}) but "
            "maps the anchors to other token ids (a permuted or mismatched vocabulary?): the anchors are not the same "
            "inputs for this encoder. Pass tokenizer=... (the tokenizer this encoder was trained with)."
        ),
    )
