"""Head-only save, push, pull and attach (the ``save_head`` / ``push_head_to_hub`` / ``from_encoder(head=...)`` API).

Kept out of ``modeling_bridge.py`` on purpose: that file is shipped to the Hub as remote code, and this one needs
the installed package (huggingface_hub, pyarrow). The model methods import this module when called.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..modeling.errors import HfBridgesError
from ..modeling.head import HeadConfig
from .cards import head_card, retarget_head_card
from .compatibility import (
    ALIGNED_THRESHOLD,
    DEFAULT_THRESHOLD,
    StitchReport,
    align_head,
    compute_stitch_report,
    select_subspaces,
    weighted_score,
)
from .format import (
    CARD_NAME,
    HEAD_CARD_NAME,
    HEAD_FILES,
    BridgeHead,
    HeadFormatError,
    head_from_model,
    interrupted_save_error,
    read_head,
    tokenizer_fingerprint,
    write_head,
)

PathLike = str | os.PathLike
# What an encoder takes as its main input tells its modality (transformers' ``main_input_name``).
INPUT_MODALITY = {"input_ids": "text", "pixel_values": "image", "input_values": "audio", "input_features": "audio"}


class HeadAttachError(HfBridgesError, ValueError):
    """A head that cannot be attached to the given encoder; the message names the problem and the fix."""


# -------------------------------------------------------------------------------------------------- save / push
def save_head(
    model,
    save_directory: PathLike,
    *,
    weights_dtype: str = "float32",
    repo_id: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    stitching_results: list[dict[str, Any]] | None = None,
    card: bool = True,
) -> Path:
    """Write only the head of ``model`` (weights, raw anchors, config, anchor space, card), atomically.

    ``weights_dtype="float16"`` halves the file (logits then differ from the original by float16 rounding).
    """
    head = head_from_model(model, weights_dtype)
    text = None
    if card:
        text = str(
            head_card(head, repo_id=repo_id, dataset=dataset, metrics=metrics, stitching_results=stitching_results)
        )
    return write_head(head, save_directory, card=text)


def push_head_to_hub(
    model,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload bridge head",
    endpoint: str | None = None,
    **save_kwargs: Any,
):
    """Push the head as a Hub model repo (created if needed); returns the ``CommitInfo`` (``.oid`` is the commit).

    Only the head files (and the card) are uploaded, so a head can share a repo with a full model.
    """
    with tempfile.TemporaryDirectory(prefix="bridge-head-") as tmp:
        folder = save_head(model, Path(tmp) / "head", repo_id=repo_id, **save_kwargs)
        return push_head_folder(
            folder,
            repo_id,
            private=private,
            token=token,
            revision=revision,
            commit_message=commit_message,
            endpoint=endpoint,
        )


def push_head_folder(
    folder: PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload bridge head",
    endpoint: str | None = None,
):
    """Upload a head folder written by ``save_head`` (checked first, so a broken head is never published)."""
    read_head(folder)
    api = HfApi(endpoint=endpoint, token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    operations = [
        CommitOperationAdd(name, str(Path(folder) / name)) for name in HEAD_FILES if (Path(folder) / name).is_file()
    ]
    for card_name in (CARD_NAME, HEAD_CARD_NAME):  # the card names the repo it is pushed to, not a placeholder
        if (Path(folder) / card_name).is_file():
            card = retarget_head_card(ModelCard.load(Path(folder) / card_name), repo_id)
            operations.append(CommitOperationAdd(card_name, str(card).encode()))
    return api.create_commit(repo_id=repo_id, operations=operations, revision=revision, commit_message=commit_message)


# ---------------------------------------------------------------------------------------------------------- pull
REPO_ID = re.compile(r"^(?:[\w.-]+/)?[\w.-]+$")


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's network errors (huggingface_hub >= 1 downloads with httpx, or its fork httpx2; it has
    already retried them, resuming its ``.incomplete`` file, when one reaches us)."""
    import importlib

    errors = []
    for name in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def pull_head(
    head: PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: PathLike | None = None,
    endpoint: str | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """A local folder holding the head: the folder itself, or a download of the Hub repo (HF cache)."""
    if os.path.isdir(head):
        return Path(head)
    interrupted = interrupted_save_error(Path(head))
    if interrupted is not None:
        raise interrupted
    head = str(head)
    if not REPO_ID.match(head) or head.startswith((".", "~")):
        raise HeadFormatError(f"no head folder at {head}; pass an existing folder or a Hub repo id such as org/name")
    try:
        folder = snapshot_download(
            head,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            endpoint=endpoint,
            # config.json too (small): it tells a full bridge model apart from a repo that is no bridge at all
            allow_patterns=[*HEAD_FILES, CARD_NAME, HEAD_CARD_NAME, "config.json"],
            force_download=force_download,
            local_files_only=local_files_only,
        )
    except RepositoryNotFoundError:
        raise HeadFormatError(
            f"no head repo {head!r} on the Hub, or it is private: check the name, or pass token=... "
            "(or run `hf auth login`) for a private repo"
        ) from None
    except RevisionNotFoundError:
        raise HeadFormatError(
            f"the head repo {head!r} has no revision {revision!r} (a branch, tag or commit sha)"
        ) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        raise HeadFormatError(
            f"cannot get head {head!r}{f' at revision {revision}' if revision else ''}: it is not in the local Hugging "
            f"Face cache and the Hub cannot be reached ({type(error).__name__}). Pull it while online "
            "(`hf-bridges head pull ...`), unset HF_HUB_OFFLINE, or pass a local folder"
        ) from None
    except HfHubHTTPError as error:
        raise HeadFormatError(f"downloading head {head!r} failed: {error}") from None
    except (requests.RequestException, OSError, *_transport_errors()) as error:  # e.g. the connection dropped mid-file
        raise HeadFormatError(
            f"downloading head {head!r} failed: the connection broke ({type(error).__name__}: {error}). Nothing "
            "partial was kept (the Hub client writes into a .incomplete file); rerun `hf-bridges head pull` to retry"
        ) from None
    return Path(folder)


def load_head(head: PathLike, **pull_kwargs: Any) -> BridgeHead:
    """Pull (if needed) and read a head; never runs code from it."""
    folder = pull_head(head, **pull_kwargs)
    bundle = read_head(folder, source=str(head))
    if not os.path.isdir(head) and folder.parent.name == "snapshots":  # the HF cache: snapshots/<commit sha>
        bundle.revision = folder.name
    return bundle


# -------------------------------------------------------------------------------------------------------- attach
def encoder_modality(encoder) -> str:
    return INPUT_MODALITY.get(getattr(encoder, "main_input_name", "input_ids"), "unknown")


def _check_tokenizer(tokenizer, anchors, name: str, source: str, max_unknown: float = 0.5) -> None:
    """Refuse a tokenizer that cannot represent the anchors (e.g. transformers' empty fallback tokenizer for an
    encoder folder without tokenizer files, which maps every word to the unknown token)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return
    ids = tokenizer([str(a) for a in anchors[:256]], add_special_tokens=False, truncation=True, max_length=512)[
        "input_ids"
    ]
    total = sum(len(row) for row in ids)
    unknown = sum(token == unk for row in ids for token in row)
    if total == 0 or unknown / total > max_unknown:
        raise HeadAttachError(
            f"cannot attach {source} to {name}: its tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) "
            f"maps {unknown} of {total} anchor tokens to the unknown token, so the anchors cannot be embedded. The "
            "encoder's tokenizer files are probably missing: pass tokenizer=... (the tokenizer the encoder was trained with)"
        )


def attach_head(
    cls,
    encoder,
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
    **overrides: Any,
):
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
    """
    from ..modeling.loaders import load_encoder, load_tokenizer
    from ..modeling.st_config import resolve_prompt, st_encoder_settings

    bundle = head if isinstance(head, BridgeHead) else load_head(head, revision=head_revision, token=token)
    source = bundle.source or "the head"
    if getattr(cls, "_with_classifier", False) and not bundle.has_classifier:
        raise HeadAttachError(
            f"{source} has no classifier (a representation head): attach it with BridgeModel.from_encoder"
        )
    st = st_encoder_settings(encoder, revision)  # a sentence-transformers encoder embeds its own way
    if st.get("model") is not None:
        encoder, tokenizer = st["model"], tokenizer or st["tokenizer"]
    model = load_encoder(encoder, revision, **(encoder_kwargs or {}))
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
            tokenizer = load_tokenizer(name, revision)
        except OSError as error:
            raise HeadAttachError(f"cannot attach {source} to {name}: {error}") from None
    if tokenizer is not None and want == "text":
        _check_tokenizer(tokenizer, bundle.anchors, name, source)
    _check_prefix(bundle, overrides, name, source)
    st_kwargs = {}
    if st:  # its pooling / Normalize / max_seq_length / prompts win over the training encoder's recorded ones
        st_kwargs = {
            "pooling": st["pooling"],
            "normalize_embeddings": st["normalize"],
            "prefix": resolve_prompt(st, overrides.pop("prefix", None)),
        }
        if st.get("max_seq_length"):  # the anchors are cut where the head's were, unless this encoder stops sooner
            recorded = bundle.config_kwargs().get("max_seq_length")
            st_kwargs["max_seq_length"] = min(recorded, st["max_seq_length"]) if recorded else st["max_seq_length"]
    kwargs = {**bundle.config_kwargs(), **st_kwargs}
    head_overrides = {key: overrides.pop(key) for key in list(overrides) if key in HeadConfig.field_names()}
    if head_overrides:
        kwargs["head_config"] = kwargs["head_config"].replace(**head_overrides)
    kwargs.update(overrides)
    try:
        with warnings.catch_warnings():  # the degenerate-anchor warnings come below, naming the head
            warnings.filterwarnings("ignore", message=r"from_encoder: .*(duplicates|degenerate anchors)")
            bridge = cls.from_encoder(
                model,
                anchors=bundle.anchors,
                anchor_labels=bundle.anchor_labels,
                tokenizer=tokenizer,
                revision=revision,
                **kwargs,
            )
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
        )
        return record_head_source(bridge, bundle)
    report = compute_stitch_report(
        bundle.anchor_embeddings,
        bridge.anchor_embeddings,
        config.projections,
        abs_transform=config.abs_transform,
        subspace_norm=config.subspace_norm,
        subspace_weights=config.subspace_weights,
        threshold=DEFAULT_THRESHOLD if stitch_threshold is None else stitch_threshold,
        training_encoder=bundle.encoder.get("name_or_path") or "an unnamed encoder",
        new_encoder=name,
        warn=False,
    )
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
    report = _check_anchor_mapping(report, bundle, tokenizer, bridge, name, source)
    if report.warning:
        warnings.warn(report.warning, UserWarning, stacklevel=3)
    bridge.stitch_report = report
    return record_head_source(bridge, bundle)


# ------------------------------------------------------------------------------------- provenance of an attach
def _check_prefix(bundle: BridgeHead, overrides: dict, name: str, source: str) -> None:
    """The head's training prefix is not the new encoder's: warn when the head had one and none was given."""
    if bundle.training_prefix and overrides.get("prefix") is None:
        warnings.warn(
            f"{source} was trained with the input prefix {bundle.training_prefix!r} (its encoder expects it), but "
            f"no prefix was given for {name}: the anchors and inputs are embedded without one. Pass prefix=... with "
            "what this encoder expects (prefix='' for none, which silences this warning)",
            UserWarning,
            stacklevel=4,
        )


def record_head_source(bridge, bundle: BridgeHead):
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
    saved = config.subspace_weights
    reference = (state["aligned_weight"], state["aligned_bias"]) if "aligned_weight" in state else None
    weights, info = align_head(
        bridge.head,
        bundle.anchor_embeddings,
        bridge.anchor_embeddings,
        reference,
        base_weights=saved,
        translation=translation,
        relative_space=relative_space,
        gate=subspace_selection == "gate",
    )
    config.subspace_weights = weights
    config.head.alignment = info  # recorded: map, residuals, fit, relative space, stitch score
    config.check()
    relative = weights[:n] if sum(weights[:n]) > 0 else None
    report = compute_stitch_report(
        bundle.anchor_embeddings,
        bridge.anchor_embeddings,
        config.projections,
        abs_transform=config.abs_transform,
        subspace_norm=config.subspace_norm,
        subspace_weights=relative,
        threshold=ALIGNED_THRESHOLD if stitch_threshold is None else stitch_threshold,
        training_encoder=bundle.encoder.get("name_or_path") or "an unnamed encoder",
        new_encoder=name,
        warn=False,
    )
    report.alignment = info
    report.subspace_weights = list(weights)
    report.score = float(info["stitch_score"])
    report.notes.append(
        f"aligned component: {info['map']} translation fitted on {len(bundle.anchors)} anchors "
        f"(held-out fit {info['fit']:.3f}), relative space {info['relative_space']}; "
        f"config.subspace_weights={weights} ({info['components']})"
    )
    report = _check_anchor_mapping(report, bundle, tokenizer, bridge, name, source)
    if report.warning:
        warnings.warn(report.warning, UserWarning, stacklevel=4)
    bridge.stitch_report = report
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
    report: StitchReport, bundle: BridgeHead, tokenizer, bridge, name: str, source: str
) -> StitchReport:
    """Compare the new tokenizer's mapping of the anchors with the head's record; warn on degenerate anchors."""
    _warn_degenerate_anchors(bundle.anchors, bridge.anchor_embeddings, name, source)
    recorded = bundle.config.get("tokenizer")
    if not recorded or tokenizer is None or bundle.config["modality"] != "text":
        return report  # an older head (no fingerprint), or no tokenizer involved
    now = tokenizer_fingerprint(tokenizer, bundle.anchors)
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


def _warn_degenerate_anchors(anchors, embeddings, name: str, source: str) -> None:
    """Duplicate anchors add nothing; anchors the encoder embeds (almost) identically make every relative
    coordinate the same, so the logits no longer depend on the input."""
    import torch

    texts = [a if isinstance(a, (str, bytes)) else repr(a) for a in anchors]
    duplicates = len(texts) - len(set(texts))
    if duplicates:
        warnings.warn(
            f"{source}: {duplicates} of its {len(texts)} anchors are duplicates; they add no information "
            "(choose distinct anchors when you train the next head)",
            UserWarning,
            stacklevel=4,
        )
    emb = embeddings.detach().float()
    spread = (emb - emb.mean(0, keepdim=True)).norm(dim=1).max()
    if not torch.isfinite(spread) or spread <= 1e-6 * (emb.norm(dim=1).max() + 1e-12):
        warnings.warn(
            f"{name} embeds all {len(texts)} anchors of {source} (almost) identically (zero variance): "
            "every input gets the same relative representation and the same prediction. Check the "
            "tokenizer and pooling, or use another encoder",
            UserWarning,
            stacklevel=4,
        )
