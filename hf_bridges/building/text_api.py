"""The text API of the text bridges, as sentence-transformers and SetFit users call it: ``bridge.encode(texts)``,
``bridge.predict(texts)``, ``bridge.predict_proba(texts)`` (the model methods call these).

Every call tokenises the whole list once (no padding), sorts ALL rows by token length, runs length-uniform batches
and restores the input order; each batch goes through the same code as ``forward``, so the numbers equal
``forward`` on the same texts (tested to 1e-6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..modeling.modeling_bridge import EmbedFn, TextInputError, embed_batches, length_order
from ..modeling.registry import ConfigError, InputError

OUTPUT_VALUES = ("sentence_embedding", "relative_representation")


@torch.no_grad()
def encode(
    bridge: Any,
    sentences: str | Sequence[str],
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    output_value: str = "sentence_embedding",
    convert_to_numpy: bool = True,
    convert_to_tensor: bool = False,
    normalize_embeddings: bool = False,
) -> Any:
    """Embed ``sentences`` as ``SentenceTransformer.encode`` does: one row per text (a 1-D result for one
    string), a numpy array by default, a tensor with ``convert_to_tensor=True``, a list of tensors with both
    conversions off.

    ``output_value``: ``"sentence_embedding"`` (the pooled encoder embedding, as ``forward``'s ``embeddings``:
    what the anchors are made of and what ``forward(features=...)`` takes, so a training set embedded once
    trains the head for many epochs) or ``"relative_representation"`` (r(z), the head's anchor-relative
    representation). ``normalize_embeddings``: L2-normalise the result (the bridge's own ``Normalize`` is
    always applied, as in ``forward``). ``show_progress_bar``: ``None`` follows the transformers /
    huggingface_hub progress-bar switches.
    """
    if output_value not in OUTPUT_VALUES:
        raise ConfigError(f"output_value must be one of {OUTPUT_VALUES}, got {output_value!r}")
    relative = output_value == "relative_representation"

    def step(**batch: torch.Tensor) -> torch.Tensor:
        if not relative:
            return bridge.embed(**batch)
        return bridge.forward_features(None, None, **batch)[1]

    texts, single = _as_texts(sentences, "encode")
    out = _run_on_texts(bridge, texts, step, batch_size, show_progress_bar, output_value.replace("_", " "))
    if normalize_embeddings:
        out = torch.nn.functional.normalize(out, p=2, dim=-1)
    return _convert(out, single, convert_to_numpy, convert_to_tensor)


@torch.no_grad()
def predict_proba(
    bridge: Any,
    inputs: str | Sequence[str],
    batch_size: int = 32,
    as_numpy: bool = False,
    show_progress_bar: bool | None = None,
) -> Any:
    """Class probabilities (n, num_labels), as SetFit's ``predict_proba``: softmax of the logits (sigmoid for a
    multi-label bridge); a tensor, or numpy with ``as_numpy=True``; one row for one string."""
    if bridge.config.problem_type == "regression" or bridge.config.num_labels == 1:
        raise ConfigError("predict_proba needs a classifier; this bridge regresses: use predict(texts)")
    logits = _logits(bridge, inputs, batch_size, show_progress_bar)
    probs = logits.sigmoid() if bridge.config.problem_type == "multi_label_classification" else logits.softmax(-1)
    return _convert(probs, _is_single(inputs), as_numpy, not as_numpy)


@torch.no_grad()
def predict(
    bridge: Any,
    inputs: str | Sequence[str],
    batch_size: int = 32,
    as_numpy: bool = False,
    use_labels: bool = True,
    show_progress_bar: bool | None = None,
) -> Any:
    """Predictions, as SetFit's ``predict``: label names from ``config.id2label`` (a list, one name for one
    string) with ``use_labels=True``, else class ids as a tensor (numpy with ``as_numpy=True``); multi-hot rows
    for a multi-label bridge, values for a regression bridge (both as tensor / numpy)."""
    logits = _logits(bridge, inputs, batch_size, show_progress_bar)
    single = _is_single(inputs)
    if bridge.config.problem_type == "regression" or bridge.config.num_labels == 1:
        return _convert(logits.squeeze(-1), single, as_numpy, not as_numpy)
    if bridge.config.problem_type == "multi_label_classification":
        return _convert((logits.sigmoid() > 0.5).long(), single, as_numpy, not as_numpy)
    ids = logits.argmax(-1)
    if use_labels:
        names = [bridge.config.id2label[int(i)] for i in ids]
        return names[0] if single else names
    return _convert(ids, single, as_numpy, not as_numpy)


def _logits(bridge: Any, inputs: Any, batch_size: int, show_progress_bar: bool | None) -> torch.Tensor:
    if getattr(bridge, "_with_classifier", False) is False or bridge.get_classifier() is None:
        raise ConfigError(
            "this bridge has no classifier (a representation model): use encode(texts), or "
            "reset_classifier(num_labels) and train it"
        )
    texts, _ = _as_texts(inputs, "predict")
    return _run_on_texts(
        bridge, texts, lambda **batch: bridge(**batch).logits, batch_size, show_progress_bar, "predictions"
    )


def _run_on_texts(
    bridge: Any,
    texts: list[str],
    step: Callable[..., torch.Tensor],
    batch_size: int,
    show_progress_bar: bool | None,
    what: str,
) -> torch.Tensor:
    """``step(**batch)`` over all texts in length-sorted batches, in eval mode, rows in input order."""
    if bridge.main_input_name != "input_ids":
        raise TextInputError(
            f"{type(bridge).__name__} takes {bridge.main_input_name!r}, not texts: call it (or a pipeline) on "
            "its own inputs"
        )
    tokenizer = bridge._get_tokenizer()
    if tokenizer is None:
        raise ConfigError("this bridge has no tokenizer: set bridge.tokenizer, or build it with from_encoder")
    if len(texts) == 0:
        raise InputError("nothing to encode: the list of texts is empty")
    rows = bridge.tokenize(texts, padding=False, return_tensors=None)  # as forward's inputs, unpadded, once
    rows = {key: rows[key] for key in tokenizer.model_input_names if key in rows}
    pad = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    name = bridge.config.name_or_path or bridge.config.encoder_name_or_path or type(bridge).__name__
    was_training = bridge.training
    bridge.eval()
    try:
        return embed_rows_in_length_order(
            step,
            rows,
            batch_size,
            pad,
            padding_side=tokenizer.padding_side,
            desc=f"{what} of {len(texts)} texts with {name}",
            progress=show_progress_bar,
            device=bridge.device,
        )
    finally:
        bridge.train(was_training)


def _is_single(inputs: Any) -> bool:
    return isinstance(inputs, str)


def _as_texts(inputs: Any, method: str) -> tuple[list[str], bool]:
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, torch.Tensor) or not hasattr(inputs, "__iter__"):
        raise TextInputError(f"{method}() takes a text or a list of texts, got {type(inputs).__name__}")
    texts = list(inputs)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TextInputError(f"{method}() takes texts, got an item of type {type(bad).__name__}: {bad!r:.60}")
    return texts, False


def _convert(out: torch.Tensor, single: bool, to_numpy: bool, to_tensor: bool) -> Any:
    """sentence-transformers' conventions: tensor wins over numpy; neither -> a list of row tensors."""
    out = out[0] if single else out
    if to_tensor:
        return out
    if to_numpy:
        return out.float().cpu().numpy() if out.is_floating_point() else out.cpu().numpy()
    return out if single else list(out)


def pad_rows(
    rows: Mapping[str, Sequence[Sequence[int]]], pad_values: Mapping[str, int], padding_side: str = "right"
) -> dict[str, torch.Tensor]:
    """Token rows of different lengths (a tokenizer's output with ``padding=False``) as padded ``long`` tensors, as
    ``tokenizer.pad`` would: each key filled with ``pad_values[key]`` (``attention_mask`` and others with 0)."""
    width = max((len(row) for row in rows["input_ids"]), default=0)
    out = {}
    for key, values in rows.items():
        fill = 0 if key == "attention_mask" else pad_values.get(key, 0)
        tensor = torch.full((len(values), width), fill, dtype=torch.long)
        for i, row in enumerate(values):
            if len(row):
                where = slice(width - len(row), width) if padding_side == "left" else slice(0, len(row))
                tensor[i, where] = torch.as_tensor(row, dtype=torch.long)
        out[key] = tensor
    return out


def embed_rows_in_length_order(
    embed_fn: EmbedFn,
    rows: Mapping[str, Sequence[Sequence[int]]],
    batch_size: int,
    pad_values: Mapping[str, int],
    *,
    padding_side: str = "right",
    desc: str | None = None,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``embed_fn(**batch)`` over a WHOLE list of unpadded token rows (tokenised once), in length-sorted batches,
    each padded to its own longest row (:func:`pad_rows`) and moved to ``device``; output rows in input order."""
    lengths = torch.tensor([len(row) for row in rows["input_ids"]])

    def make_batch(picked: torch.Tensor) -> dict:
        batch = pad_rows(
            {key: [values[i] for i in picked.tolist()] for key, values in rows.items()}, pad_values, padding_side
        )
        return {key: value.to(device) for key, value in batch.items()}

    return embed_batches(embed_fn, len(lengths), batch_size, make_batch, desc, progress, length_order(lengths))
