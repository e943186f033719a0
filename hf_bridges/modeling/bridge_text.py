"""The text-level API of the text bridges, as sentence-transformers and SetFit users call it: ``encode(texts)``,
``predict(texts)``, ``predict_proba(texts)``.

Every call tokenises the whole list once (no padding), sorts ALL rows by token length, runs length-uniform
batches and restores the input order (``batching.embed_rows_in_length_order``); each batch goes through the same
code as ``forward``, so the numbers equal ``forward`` on the same texts (tested to 1e-6).

Only relative imports of sibling files and torch/transformers: shipped as remote code next to the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .batching import embed_rows_in_length_order
from .bridge_pipelines import register_bridge_pipelines
from .errors import ConfigError, HfBridgesError

register_bridge_pipelines()  # pipeline(task, model=<bridge object>) finds the bridge's tokenizer

OUTPUT_VALUES = ("sentence_embedding", "relative_representation")


class TextInputError(HfBridgesError, TypeError):
    """Texts given where token tensors are expected (or the reverse); the message names the method to call."""


def refuse_texts(args: Sequence[Any], inputs: dict[str, Any]) -> None:
    """Raise a clear error when ``embed``/``forward`` got strings instead of token tensors."""
    for value in (*args, *inputs.values()):
        is_text = isinstance(value, str) or (
            isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], str)
        )
        if is_text:
            raise TextInputError(
                "embed() takes token tensors (input_ids, attention_mask); for texts call model.encode(texts) "
                "(pooled embeddings, sentence-transformers style) or model.tokenize(texts) first"
            )


class TextInference:
    """Mixin of the text bridges (through ``Tokenizing``): texts in, embeddings / labels / probabilities out."""

    @staticmethod
    def _refuse_texts(args: Sequence[Any], inputs: dict[str, Any]) -> bool:
        """Raise when ``embed`` got texts; else ``False`` (so it reads as a guard in ``embed``)."""
        refuse_texts(args, inputs)
        return False

    @torch.no_grad()
    def encode(
        self,
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
                return self.embed(**batch)
            return self.forward_features(None, None, **batch)[1]

        texts, single = _as_texts(sentences, "encode")
        out = self._run_on_texts(texts, step, batch_size, show_progress_bar, output_value.replace("_", " "))
        if normalize_embeddings:
            out = torch.nn.functional.normalize(out, p=2, dim=-1)
        return _convert(out, single, convert_to_numpy, convert_to_tensor)

    @torch.no_grad()
    def predict_proba(
        self,
        inputs: str | Sequence[str],
        batch_size: int = 32,
        as_numpy: bool = False,
        show_progress_bar: bool | None = None,
    ) -> Any:
        """Class probabilities (n, num_labels), as SetFit's ``predict_proba``: softmax of the logits (sigmoid for a
        multi-label bridge); a tensor, or numpy with ``as_numpy=True``; one row for one string."""
        if self.config.problem_type == "regression" or self.config.num_labels == 1:
            raise ConfigError("predict_proba needs a classifier; this bridge regresses: use predict(texts)")
        logits = self._logits(inputs, batch_size, show_progress_bar)
        probs = logits.sigmoid() if self.config.problem_type == "multi_label_classification" else logits.softmax(-1)
        return _convert(probs, _is_single(inputs), as_numpy, not as_numpy)

    @torch.no_grad()
    def predict(
        self,
        inputs: str | Sequence[str],
        batch_size: int = 32,
        as_numpy: bool = False,
        use_labels: bool = True,
        show_progress_bar: bool | None = None,
    ) -> Any:
        """Predictions, as SetFit's ``predict``: label names from ``config.id2label`` (a list, one name for one
        string) with ``use_labels=True``, else class ids as a tensor (numpy with ``as_numpy=True``); multi-hot rows
        for a multi-label bridge, values for a regression bridge (both as tensor / numpy)."""
        logits = self._logits(inputs, batch_size, show_progress_bar)
        single = _is_single(inputs)
        if self.config.problem_type == "regression" or self.config.num_labels == 1:
            return _convert(logits.squeeze(-1), single, as_numpy, not as_numpy)
        if self.config.problem_type == "multi_label_classification":
            return _convert((logits.sigmoid() > 0.5).long(), single, as_numpy, not as_numpy)
        ids = logits.argmax(-1)
        if use_labels:
            names = [self.config.id2label[int(i)] for i in ids]
            return names[0] if single else names
        return _convert(ids, single, as_numpy, not as_numpy)

    def _logits(self, inputs: Any, batch_size: int, show_progress_bar: bool | None) -> torch.Tensor:
        if getattr(self, "_with_classifier", False) is False or self.get_classifier() is None:
            raise ConfigError(
                "this bridge has no classifier (a representation model): use encode(texts), or "
                "reset_classifier(num_labels) and train it"
            )
        texts, _ = _as_texts(inputs, "predict")
        return self._run_on_texts(
            texts, lambda **batch: self(**batch).logits, batch_size, show_progress_bar, "predictions"
        )

    def _run_on_texts(
        self,
        texts: list[str],
        step: Callable[..., torch.Tensor],
        batch_size: int,
        show_progress_bar: bool | None,
        what: str,
    ) -> torch.Tensor:
        """``step(**batch)`` over all texts in length-sorted batches, in eval mode, rows in input order."""
        if self.main_input_name != "input_ids":
            raise TextInputError(
                f"{type(self).__name__} takes {self.main_input_name!r}, not texts: call it (or a pipeline) on "
                "its own inputs"
            )
        tokenizer = self._get_tokenizer()
        if tokenizer is None:
            raise ConfigError("this bridge has no tokenizer: set bridge.tokenizer, or build it with from_encoder")
        if len(texts) == 0:
            raise ValueError("nothing to encode: the list of texts is empty")
        rows = self.tokenize(texts, padding=False, return_tensors=None)  # as forward's inputs, unpadded, once
        rows = {key: rows[key] for key in tokenizer.model_input_names if key in rows}
        pad = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
        name = self.config.name_or_path or self.config.encoder_name_or_path or type(self).__name__
        was_training = self.training
        self.eval()
        try:
            return embed_rows_in_length_order(
                step,
                rows,
                batch_size,
                pad,
                padding_side=tokenizer.padding_side,
                desc=f"{what} of {len(texts)} texts with {name}",
                progress=show_progress_bar,
                device=self.device,
            )
        finally:
            self.train(was_training)


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
