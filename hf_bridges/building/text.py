"""Building a text bridge: ``BridgeModel.from_encoder(encoder, anchors)`` and
``BridgeForSequenceClassification.from_encoder(...)`` land here (``head=``: ``hf_bridges.heads.attach``)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

from transformers import PreTrainedModel

from ..modeling.configuration_bridge import BridgeConfig
from ..modeling.modeling_bridge import call_tokenizer
from ..modeling.registry import InputError
from .arguments import (
    FROM_ENCODER_ARGS,
    attach_arguments,
    check_config_kwargs,
    given,
    label_kwargs,
    resolve_head,
    warn_degenerate_anchors,
    with_alignment,
)
from .loading import load_fitted, load_tokenizer
from .sentence_transformers import resolve_prompt, st_encoder_settings


def build_bridge(
    cls: type,
    encoder: str | PreTrainedModel,
    anchors: Sequence[Any] | None = None,
    *,
    head: Any = None,
    tokenizer: Any = None,
    revision: str | None = None,
    anchor_labels: Sequence[int] | None = None,
    pooling: str | None = None,
    max_seq_length: int | None = None,
    normalize_embeddings: bool | None = None,
    labels: Any = None,
    projections: Sequence[str] | None = None,
    aggregation: str | None = None,
    head_config: Any = None,
    method: str | None = None,
    prefix: str | None = None,
    encoder_kwargs: dict | None = None,
    embed_anchors: bool = True,
    alignment_inputs: Sequence[Any] | None = None,
    anchor_inputs: Callable[[Any, int, str], dict | None] | None = None,
    **config_kwargs: Any,
) -> Any:
    """Wrap ``encoder`` (Hub id, folder, loaded model or ``SentenceTransformer``) and embed ``anchors`` (texts).

    ``pooling`` / ``max_seq_length`` / ``normalize_embeddings`` / ``prefix`` = ``None``: a sentence-transformers
    model's own (``modules.json``; ``prefix`` may name a prompt), else ``mean`` / 128 / ``False`` / ``""``.
    ``labels``: class names (a ``datasets.ClassLabel``, list or ``{id: name}``) -> ``num_labels``, ``id2label``.
    Extra keyword arguments must be :class:`BridgeConfig` fields (``num_labels``, ``id2label``, ``abs_transform``,
    ...); anything else raises ``TypeError``. ``head_config``: a :class:`~.head.HeadConfig` (or dict) for the head;
    ``method``: a named head, exactly (``"paper"``, a stitch row name: ``HeadConfig.from_method``), fields on top.
    ``prefix``: text the encoder expects before every input (e.g. ``"passage: "`` for E5-style retrieval
    models); the anchors are embedded with it, it is saved as ``config.input_prefix`` and ``bridge.tokenize``
    prepends it. With ``head=``, ``prefix`` is the NEW encoder's own (the head records its training prefix).
    ``embed_anchors=False`` leaves the anchors un-embedded, to fill them with ``set_anchor_embeddings`` (e.g.
    from a cache) or ``refresh_anchors()``. ``alignment_inputs``: unlabelled inputs stored after the anchors that
    only fit the aligned map at attach time (the alignment set, docs/method.md); the relative part ignores them.
    ``head=`` (a folder or Hub repo id written by ``save_head``/``push_head_to_hub``) attaches that trained head
    instead: its anchors are embedded by this encoder and ``model.stitch_report`` says how well they match
    (see ``hf_bridges.heads.attach.attach_head`` for ``head_revision``, ``token``, ``subspace_selection``).
    ``anchor_inputs``: what an attach that has tokenised the anchors already passes (``heads.attach.AnchorTokens``):
    called with the bridge's tokenizer, ``max_seq_length`` and prefix, it returns the anchors' padded
    ``input_ids`` / ``attention_mask`` (checked by the caller against the tokenizer), or None to tokenise them here.
    """
    if head is not None:
        if anchors is not None or alignment_inputs is not None or method is not None:
            raise InputError("pass either anchors=... (a new head) or head=... (a trained head brings its anchors)")
        if not embed_anchors:
            raise InputError("embed_anchors=False is for a new head: an attach embeds (or reuses) its anchors")
        from ..heads.attach import attach_head

        check_config_kwargs(config_kwargs, "from_encoder", FROM_ENCODER_ARGS, allowed=attach_arguments(attach_head))
        # prefix: the NEW encoder's (attach_head embeds the head's anchors with it, saved as input_prefix)
        settings = given(prefix=prefix, pooling=pooling, max_seq_length=max_seq_length, labels=labels)
        settings.update(given(normalize_embeddings=normalize_embeddings), tokenizer=tokenizer, revision=revision)
        return attach_head(cls, encoder, head, encoder_kwargs=encoder_kwargs, **settings, **config_kwargs)
    check_config_kwargs(config_kwargs, "from_encoder", FROM_ENCODER_ARGS)
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string such as 'passage: ', got {type(prefix).__name__}")
    anchors = list(anchors) if anchors is not None else []
    if len(anchors) < 2:
        raise InputError(f"a bridge needs at least 2 anchors (raw inputs such as texts), got {len(anchors)}")
    head_config, projections, aggregation = resolve_head(
        "from_encoder", method, head_config, projections, aggregation, config_kwargs
    )
    anchors, anchor_labels, head_config = with_alignment(anchors, anchor_labels, head_config, alignment_inputs)
    config_kwargs.update(label_kwargs(labels, config_kwargs))
    encoder, tokenizer, pooling, max_seq_length, normalize_embeddings, prefix, subfolder = encoder_settings(
        encoder, revision, tokenizer, pooling, max_seq_length, normalize_embeddings, prefix
    )
    model, max_seq_length = load_fitted(max_seq_length, encoder, revision, subfolder, **(encoder_kwargs or {}))
    if getattr(model, "main_input_name", "input_ids") != "input_ids" and cls.main_input_name == "input_ids":
        raise InputError(
            f"{type(model).__name__} takes {model.main_input_name!r}, not text: use BridgeForImageClassification "
            "for image encoders, ModuleBridgeForClassification for other modules"
        )
    name = os.fspath(encoder) if isinstance(encoder, (str, os.PathLike)) else getattr(model, "name_or_path", None)
    if tokenizer is None:
        if not name:
            raise InputError("the encoder was passed as a model without name_or_path: pass tokenizer=...")
        tokenizer = load_tokenizer(name, revision, subfolder)
    tokenizer = with_max_length(tokenizer, max_seq_length)
    tokens = anchor_inputs(tokenizer, max_seq_length, prefix) if anchor_inputs is not None else None
    tokens = (
        tokens
        if tokens is not None
        else _checked(tokenizer)(
            [prefix + str(a) for a in anchors],
            padding=True,
            truncation=True,
            max_length=max_seq_length,
            return_tensors="pt",
        )
    )
    config = BridgeConfig(
        encoder=model.config.to_dict(),
        encoder_name_or_path=name,
        encoder_revision=revision,
        pooling=pooling,
        max_seq_length=max_seq_length,
        anchors=anchors,
        anchor_labels=anchor_labels,
        anchor_seq_length=tokens["input_ids"].shape[1],
        head=head_config,
        input_prefix=prefix,
        normalize_embeddings=normalize_embeddings,
        **given(projections=projections, aggregation=aggregation),
        **config_kwargs,
    )
    bridge = cls(config, encoder=model)
    if name and not os.path.isdir(name):  # a Hub id: Trainer's card names it as base_model
        bridge.config._name_or_path = name  # (not bridge.name_or_path: peft reads that as the base to reload)
    bridge.tokenizer = tokenizer
    bridge.anchors.input_ids.copy_(tokens["input_ids"])
    bridge.anchors.attention_mask.copy_(tokens["attention_mask"])
    warn_degenerate_anchors(anchors, bridge.refresh_anchors() if embed_anchors else None)  # duplicates: always
    return bridge


def encoder_settings(
    encoder: Any,
    revision: str | None,
    tokenizer: Any,
    pooling: str | None,
    max_seq_length: int | None,
    normalize: bool | None,
    prefix: str | None,
) -> tuple:
    """``(encoder, tokenizer, pooling, max_seq_length, normalize, prefix, subfolder)`` with ``None`` resolved: a
    sentence-transformers model's own settings (a loaded ``SentenceTransformer`` gives its transformers model and
    tokenizer; a prompt name becomes its text; ``subfolder``: where its Transformer module keeps the weights and
    tokenizer, e.g. ``0_Transformer``), else ``mean`` / 128 / ``False`` / ``""`` / ``""``."""
    st = st_encoder_settings(encoder, revision)  # {} unless a sentence-transformers model
    if st.get("model") is not None:
        encoder, tokenizer = st["model"], tokenizer or st["tokenizer"]
    where = f"sentence-transformers model {encoder!r}" if isinstance(encoder, str) else None
    return (
        encoder,
        tokenizer,
        pooling or st.get("pooling", "mean"),
        max_seq_length or st.get("max_seq_length") or 128,
        st.get("normalize", False) if normalize is None else bool(normalize),
        resolve_prompt(st, prefix, where),
        st.get("subfolder", "") if st.get("model") is None else "",
    )


def with_max_length(tokenizer: Any, max_seq_length: int) -> Any:
    """The tokenizer whose ``model_max_length`` is the bridge's ``max_seq_length`` (saved with it, so a pipeline
    or a user calling ``tokenizer(text, truncation=True)`` cuts where the anchors were cut, not at 512). A shallow
    copy: the caller's tokenizer object is left as it was."""
    if tokenizer is None or getattr(tokenizer, "model_max_length", max_seq_length) == max_seq_length:
        return tokenizer
    tokenizer = copy.copy(tokenizer)
    tokenizer.init_kwargs = {**getattr(tokenizer, "init_kwargs", {}), "model_max_length": max_seq_length}
    tokenizer.model_max_length = max_seq_length
    return tokenizer


def _checked(tokenizer: Any) -> Any:
    """``tokenizer`` as a function that names an invalid text (``call_tokenizer``)."""
    return lambda texts, **options: call_tokenizer(tokenizer, texts, **options)
