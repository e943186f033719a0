"""Checks on what a caller hands a bridge (features, texts, labels, lengths): one :class:`InputError` naming the
problem and the fix, instead of a raw torch / tokenizers error deep in the forward or a silent NaN.

The checks cost nothing on the happy path beyond a shape or dtype test (a tokenizer error is explained after it
happened; only the logits are scanned for non-finite values). Only relative imports of sibling files and
torch/transformers: shipped as remote code next to the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.utils import logging

from .errors import HfBridgesError
from .head_checks import _all_finite

logger = logging.get_logger(__name__)

# Encoders whose position ids start after the padding index (RoBERTa's padding_idx + 1): 2 positions fewer usable.
POSITION_OFFSET_TYPES = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "mpnet",
    "longformer",
    "data2vec-text",
)


class InputError(HfBridgesError, ValueError):
    """Inputs a bridge cannot use (wrong dtype, empty rows, invalid text, mismatched labels); the message says why."""


def check_features(features: torch.Tensor) -> torch.Tensor:
    """Precomputed embeddings must be floating point: integer or boolean features are refused, never cast."""
    if isinstance(features, torch.Tensor) and not features.is_floating_point():
        raise InputError(
            f"features must be floating-point embeddings (float32 / float16 / bfloat16), got {features.dtype}: pass "
            "what model.embed(...) (or your encoder) returns; cast explicitly only if the numbers really are embeddings"
        )
    return features


def check_finite(output: Any, what: str = "logits") -> Any:
    """Refuse non-finite head outputs (e.g. finite features of magnitude 1e20 overflow float32 in the head); an
    in-graph assertion under ``torch.compile``."""
    message = (
        f"the head produced non-finite {what} (NaN or inf) from its inputs: features far beyond the encoder's "
        "scale overflow float32 (embeddings are O(1)-O(100)), or the inputs hold NaN/inf. Check the features "
        "passed in, or run the encoder in float32"
    )
    if isinstance(output, torch.Tensor) and output.is_floating_point() and not _all_finite(output, message):
        raise InputError(message)
    return output


def check_batch(input_ids: torch.Tensor | None) -> None:
    """A batch with no rows, or no token at all (empty strings, and a tokenizer that adds no special tokens)."""
    if input_ids is not None and input_ids.shape[0] == 0:
        raise InputError("empty batch: input_ids has 0 rows")
    if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.shape[1] == 0:
        raise InputError(
            f"the {input_ids.shape[0]} input(s) hold no tokens (empty texts, and this tokenizer adds no special tokens "
            "such as [CLS]): drop empty texts, or give every text at least one word"
        )


def text_checked(tokenizer: Any) -> Any:
    """``tokenizer`` as a function that names an invalid text (see :func:`call_tokenizer`)."""
    return lambda texts, **options: call_tokenizer(tokenizer, texts, **options)


def call_tokenizer(tokenizer: Any, texts: Sequence[str], **options: Any) -> Any:
    """``tokenizer(texts, **options)``; a text the tokenizer cannot take (a lone surrogate such as ``"\\ud800"``, which
    is not valid Unicode text) is named instead of tokenizers' ``TextEncodeInput must be ...``."""
    try:
        return tokenizer(list(texts), **options)
    except (TypeError, ValueError) as error:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text {i} is a {type(text).__name__}, not a string: pass texts as str") from None
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as bad:
                raise InputError(
                    f"text {i} ({text[:40]!r}) is not valid Unicode text ({bad.reason} at character {bad.start}, "
                    "e.g. a lone surrogate from a bad decode): clean it, e.g. "
                    "text.encode('utf-8', 'replace').decode('utf-8')"
                ) from None
        raise error


def fit_max_seq_length(encoder_config: Any, max_seq_length: int, where: str = "from_encoder") -> int:
    """``max_seq_length``, or the encoder's own limit (``max_position_embeddings``, less RoBERTa's offset) when that
    is lower: position ids past it do not exist, so a longer input would crash the encoder. Logged when clamped."""
    positions = getattr(encoder_config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return max_seq_length
    offset = 0
    if getattr(encoder_config, "model_type", None) in POSITION_OFFSET_TYPES:
        offset = int(getattr(encoder_config, "pad_token_id", 1) or 1) + 1
    limit = positions - offset
    if limit >= 1 and max_seq_length > limit:
        logger.warning(
            f"{where}: max_seq_length={max_seq_length} is above what the encoder takes (max_position_embeddings="
            f"{positions}{f' less {offset}' if offset else ''}): clamped to {limit}"
        )
        return limit
    return max_seq_length


def check_class_labels(labels: torch.Tensor, logits: torch.Tensor, num_labels: int, problem_type: str | None) -> None:
    """Float labels with one value per example for a multi-class head: class ids were meant (or multi-hot rows)."""
    if not isinstance(labels, torch.Tensor) or problem_type == "regression" or num_labels < 2:
        return
    multi = problem_type == "multi_label_classification" or (problem_type is None and labels.is_floating_point())
    if multi and labels.shape != logits.shape:
        raise InputError(
            f"labels of dtype {labels.dtype} and shape {list(labels.shape)} for {num_labels} classes: pass integer "
            f"class ids (labels.long(), shape [batch]) for single-label classification, or float multi-hot rows of "
            f"shape {list(logits.shape)} for multi-label classification"
        )
