"""What ``from_encoder`` and the text bridge's forward do with user inputs: label names, the tokenizer's length,
over-long token rows.

Only relative imports of sibling files and torch/transformers: shipped as remote code next to the weights.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers.utils import logging

from .bridge_text import TextInference
from .errors import ConfigError
from .input_checks import call_tokenizer
from .loaders import load_tokenizer
from .st_config import resolve_prompt, st_encoder_settings

logger = logging.get_logger(__name__)


def encoder_settings(encoder, revision, tokenizer, pooling, max_seq_length, normalize, prefix) -> tuple:
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


def label_kwargs(labels: Any, config_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``num_labels`` / ``id2label`` / ``label2id`` from ``labels``: a ``datasets.ClassLabel`` (duck-typed: its
    ``names``), a list of names or an ``{id: name}`` mapping. ``{}`` for ``None``. Refuses a clash with an
    explicit ``num_labels`` / ``id2label``, so the names can never silently disagree with the classifier."""
    if labels is None:
        return {}
    names = getattr(labels, "names", None)
    if names is not None:
        id2label = dict(enumerate(str(n) for n in names))
    elif isinstance(labels, Mapping):
        id2label = {int(i): str(n) for i, n in labels.items()}
    elif isinstance(labels, (list, tuple)):
        id2label = dict(enumerate(str(n) for n in labels))
    else:
        raise TypeError(
            f"labels must be a datasets.ClassLabel, a list of names or an {{id: name}} dict, got "
            f"{type(labels).__name__}"
        )
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 1:
        raise ConfigError(f"labels must name the classes 0..n-1, got ids {sorted(id2label)}")
    given = config_kwargs.get("id2label")
    if given is not None and {int(i): str(n) for i, n in dict(given).items()} != id2label:
        raise ConfigError(f"labels={id2label} and id2label={dict(given)} disagree; pass one of them")
    if config_kwargs.get("num_labels") not in (None, len(id2label)):
        raise ConfigError(f"labels names {len(id2label)} classes but num_labels={config_kwargs['num_labels']}")
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}


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


def truncate_rows(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    extra: dict[str, Any],
    limit: int,
    get_tokenizer: Callable[[], Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """Cut token rows longer than ``limit`` (e.g. a pipeline call without ``truncation=True``) as the tokenizer
    would have: the first ``limit - 1`` tokens and the closing special token ([SEP], </s>) when the row ends with
    one (no tokenizer to tell: assumed), else the first ``limit``. Rows are re-padded on the right."""
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[1] <= limit:
        return input_ids, attention_mask, extra
    logger.warning_once(
        f"inputs longer than max_seq_length={limit} tokens are cut there (where the anchors were cut); "
        "tokenize with bridge.tokenize(...) or truncation=True to avoid this"
    )
    tokenizer = get_tokenizer() if get_tokenizer is not None else None
    special_ids = set(tokenizer.all_special_ids) if tokenizer is not None else None
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    rows, width = input_ids.shape
    positions = torch.arange(width, device=input_ids.device)
    index = torch.zeros(rows, limit, dtype=torch.long, device=input_ids.device)
    new_mask = torch.zeros(rows, limit, dtype=mask.dtype, device=mask.device)
    for row in range(rows):
        valid = positions[mask[row].bool()]
        if len(valid) > limit:
            last = int(input_ids[row, valid[-1]])
            keep_last = special_ids is None or last in special_ids
            valid = torch.cat([valid[: limit - 1], valid[-1:]]) if keep_last else valid[:limit]
        index[row, : len(valid)] = valid  # padded slots repeat position 0, masked out
        new_mask[row, : len(valid)] = 1

    def cut(tensor):
        if isinstance(tensor, torch.Tensor) and tensor.shape[:2] == input_ids.shape:
            return torch.gather(
                tensor, 1, index.view(rows, limit, *([1] * (tensor.dim() - 2))).expand(rows, limit, *tensor.shape[2:])
            )
        return tensor

    return cut(input_ids), new_mask, {key: cut(value) for key, value in extra.items()}


class Tokenizing(TextInference):
    """Mixin of the bridge models: text in as the anchors went in (the saved tokenizer found again after a load);
    ``encode`` / ``predict`` / ``predict_proba`` on texts come from :class:`~.bridge_text.TextInference`."""

    def tokenize(self, texts: str | Sequence[str], **kwargs: Any):
        """Tokenise ``texts`` as the anchors were: ``config.input_prefix`` prepended, padded, truncated to
        ``max_seq_length``, as PyTorch tensors (``kwargs`` override these tokenizer arguments)."""
        if self._get_tokenizer() is None:
            raise ValueError("this bridge has no tokenizer: set bridge.tokenizer, or build it with from_encoder")
        texts = [texts] if isinstance(texts, str) else list(texts)
        prefix = self.config.input_prefix
        options = {
            "padding": True,
            "truncation": True,
            "max_length": self.config.max_seq_length,
            "return_tensors": "pt",
            **kwargs,
        }
        return call_tokenizer(self.tokenizer, [prefix + str(t) for t in texts], **options)

    def _get_tokenizer(self):
        """``self.tokenizer``, else the one ``save_pretrained`` wrote next to the weights, from the revision the
        weights came from (``None``: there is none). Loaded on first use, so an image bridge pays nothing."""
        if self.tokenizer is None and self.name_or_path:
            source = dict(getattr(self, "_tokenizer_source", None) or {})
            if type(self).__module__.startswith("transformers_modules"):
                source["trust_remote_code"] = True  # this code already runs from that repo; its tokenizer is plain
            with contextlib.suppress(OSError, ValueError):
                self.tokenizer = load_tokenizer(self.name_or_path, **source)
        return self.tokenizer


def with_alignment(
    anchors: Any,
    anchor_labels: Sequence[int] | None,
    head_config: Any,
    alignment_inputs: Any,
    join: Callable[[Any, Any], Any] | None = None,
) -> tuple[Any, list | None, Any]:
    """Append an alignment set to the anchors: inputs stored and embedded like anchors, but only fitting the
    aligned map at attach time (``head_config.relative_anchors`` = the number of real anchors). ``join``: how
    anchors and extra inputs concatenate (default: as lists; ``torch.cat`` for tensors)."""
    if alignment_inputs is None:
        return anchors, anchor_labels, head_config
    if len(alignment_inputs) == 0:
        raise ValueError("alignment_inputs is empty: pass more inputs of the task (no labels needed), or None")
    from .head_config import HeadConfig

    head_config = HeadConfig.from_dict(head_config, where="from_encoder(head_config=...)")
    head_config = head_config.replace(relative_anchors=len(anchors))  # raises when the head has no aligned map
    labels = None if anchor_labels is None else [*anchor_labels, *([None] * len(alignment_inputs))]
    joined = join(anchors, alignment_inputs) if join is not None else [*anchors, *alignment_inputs]
    return joined, labels, head_config
