"""The bridge models: any Hugging Face encoder + a :class:`~.head.RelativeProductHead`, one model family in one
file. :class:`BridgePreTrainedModel` implements the contract once (``embed``, ``refresh_anchors``,
``forward_features`` to represent, ``forward_head`` to classify, training habits, saving and loading); a bridge kind
only declares its inputs, anchor store, ``_anchor_inputs`` and ``_encode``. This file *runs* a saved bridge: what
*builds* one (``from_encoder``, attach, head-only files, staged saves, cards, the text API) is a lazy call into the
installed package (``hf_bridges.building``), so the files next to the weights need only torch and transformers.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_bridge import BridgeConfig
from .head import (
    MLPSumAggregation,
    RelativeProductHead,
    WeightedAggregation,
    _all_finite,
    _rename_prefix,
    check_anchor_embeddings,
    get_pooling,
)
from .registry import ConfigError, HfBridgesError, InputError

logger = logging.get_logger(__name__)
EmbedFn = Callable[..., torch.Tensor]
PROGRESS_GROUP = "hf_bridges"  # huggingface_hub.utils.disable_progress_bars("hf_bridges") silences only ours
# from_pretrained arguments that say where the weights came from: the lazily loaded tokenizer comes from there too
_TOKENIZER_SOURCE = ("revision", "subfolder", "token", "cache_dir", "local_files_only", "force_download", "proxies")
_PUSH_ARGS = ("push_to_hub", "repo_id", "token", "private", "commit_message", "create_pr")


def _building(required: bool = True):
    """The installed package's building layer (from_encoder, attach, head-only files, staged saves, cards, the text
    API); without the package: an ImportError naming it, or None where plain transformers behaviour serves."""
    try:
        from hf_bridges import building
    except ImportError as error:
        if not required:
            return None
        raise ImportError(f"this needs the hf_bridges package ({error}): pip install hf-bridges") from None
    return building


# -------------------------------------------------------------------------------------------- errors and outputs
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


class TextInputError(HfBridgesError, TypeError):
    """Texts given where token tensors are expected (or the reverse); the message names the method to call."""


def refuse_texts(args: Sequence[Any], inputs: dict[str, Any]) -> None:
    """Raise a clear error when ``embed``/``forward`` got strings instead of token tensors."""
    texts = (v for v in (*args, *inputs.values()) if isinstance(v, (list, tuple)) and v and isinstance(v[0], str))
    if any(isinstance(v, str) for v in (*args, *inputs.values())) or next(texts, None) is not None:
        raise TextInputError(
            "embed() takes token tensors (input_ids, attention_mask); for texts call model.encode(texts) "
            "(pooled embeddings, sentence-transformers style) or model.tokenize(texts) first"
        )


@dataclass
class BridgeModelOutput(ModelOutput):
    """``relative_representation`` is r(z), the aggregated product of relative subspaces."""

    relative_representation: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    subspaces: torch.FloatTensor | None = None


@dataclass
class BridgeClassifierOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    relative_representation: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


# -------------------------------------------------------------------------------------------------------- inputs
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


# ------------------------------------------------------------------------------------------------------ batching
def progress_enabled(show: bool | None = None) -> bool:
    """``show`` when given (a caller's ``show_progress_bar=``); else on unless disabled through transformers or
    huggingface_hub (globally, by ``HF_HUB_DISABLE_PROGRESS_BARS``, or for the ``"hf_bridges"`` group)."""
    if show is not None:
        return bool(show)
    if not logging.is_progress_bar_enabled():
        return False
    try:
        from huggingface_hub.utils import are_progress_bars_disabled  # a transformers dependency
    except ImportError:  # pragma: no cover
        return True
    return not are_progress_bars_disabled(PROGRESS_GROUP)


def _bar(total: int, desc: str, show: bool | None):
    """A ``tqdm.auto`` bar (a transformers dependency): a widget in a notebook, lines in a log file, where its
    final state stays (on a terminal it is cleared when done)."""
    from tqdm.auto import tqdm

    leave = not bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(total=total, desc=desc, unit="row", leave=leave, disable=not progress_enabled(show))


def length_order(lengths: torch.Tensor) -> torch.Tensor:  # longest first; a stable sort keeps ties in input order
    return torch.sort(lengths, descending=True, stable=True).indices


def embed_batches(
    embed_fn: EmbedFn,
    n: int,
    batch_size: int,
    make_batch: Callable,
    desc: str | None,
    progress: bool | None,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """``embed_fn(**make_batch(rows))`` over ``n`` rows in batches (in ``order`` when given, the output rows then
    put back in input order), with one progress bar and one INFO line naming what is embedded."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if n == 0:
        raise InputError("nothing to embed: 0 rows")
    desc = desc or f"embedding {n} rows"
    logger.info(f"{desc} ({n} rows, batches of {batch_size})")
    rows = order if order is not None else torch.arange(n)
    parts = []
    with _bar(n, desc, progress) as bar:
        for start in range(0, n, batch_size):
            picked = rows[start : start + batch_size]
            parts.append(embed_fn(**make_batch(picked)))
            bar.update(len(picked))
    embeddings = torch.cat(parts)
    if order is None:
        return embeddings
    restored = torch.empty_like(embeddings)
    restored[order.to(embeddings.device)] = embeddings
    return restored


def embed_in_length_order(
    embed_fn: EmbedFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int,
    desc: str | None = None,
    progress: bool | None = None,
    **extra_inputs: torch.Tensor,
) -> torch.Tensor:
    """``embed_fn(input_ids=..., attention_mask=..., **extra_inputs)`` over all rows of padded tensors, in
    length-sorted batches: texts of very different lengths padded to the longest pay attention over padding, so
    ALL rows are sorted by length first and each batch is cut to its longest row (only right padding is trimmed:
    cutting left padding would shift the real tokens). Rows are independent under an attention mask, so the result
    equals unsorted batching up to float reduction order; the output rows are in input order."""
    lengths = attention_mask.sum(dim=1)
    right_padded = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask, **extra_inputs}

    def make_batch(rows: torch.Tensor) -> dict:
        width = max(int(lengths[rows].max()), 1) if right_padded else input_ids.shape[1]
        return {name: value[rows, :width] for name, value in tensors.items()}

    return embed_batches(embed_fn, input_ids.shape[0], batch_size, make_batch, desc, progress, length_order(lengths))


# ------------------------------------------------------------------------------------------------- anchor stores
class AnchorStore(nn.Module):
    """The anchors as this model needs them: tokenised inputs (to re-embed) and their cached embeddings."""

    def __init__(self, num_anchors: int, seq_length: int, hidden_size: int):
        super().__init__()
        self.register_buffer("input_ids", torch.zeros(num_anchors, seq_length, dtype=torch.long))
        self.register_buffer("attention_mask", torch.zeros(num_anchors, seq_length, dtype=torch.long))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        # True once `embeddings` holds this encoder's anchor embeddings (saved, so a reload does not re-embed).
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, config: BridgeConfig) -> AnchorStore:
        return cls(config.num_anchors, config.anchor_seq_length, config.hidden_size)

    def has_inputs(self) -> bool:
        return self.input_ids.shape[0] >= 2 and bool(self.attention_mask.any())

    def model_inputs(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        mask = self.attention_mask[start:stop]
        length = max(int(mask.sum(dim=1).max()), 1)  # drop columns that are padding for every row
        return {"input_ids": self.input_ids[start:stop, :length], "attention_mask": mask[:, :length]}


class ImageAnchorStore(nn.Module):
    """Anchor images as ``uint8`` (k, C, H, W) and their cached embeddings."""

    def __init__(self, num_anchors: int, image_shape: Sequence[int], hidden_size: int):
        super().__init__()
        self.register_buffer("pixels", torch.zeros(num_anchors, *image_shape, dtype=torch.uint8))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, config: BridgeConfig) -> ImageAnchorStore:
        return cls(config.num_anchors, config.anchor_image_shape or [3, 1, 1], config.hidden_size)

    def has_inputs(self) -> bool:
        return self.pixels.shape[0] >= 2


def is_tuner_layer(module: nn.Module) -> bool:
    """A peft tuner layer (LoRA, IA3, ...), recognised without importing peft."""
    return all(hasattr(module, name) for name in ("merged_adapters", "disable_adapters", "active_adapters"))


def encoder_fingerprint(encoder: nn.Module) -> tuple:
    """Changes whenever what ``encoder`` computes may have changed: ``(id, _version, steps)`` of every parameter
    (optimizer steps, ``load_state_dict`` and in-place merges bump versions; fused optimizers only the step count of
    ``building.optimizer_steps``; new modules bring new ids), and per peft tuner layer its active adapters
    (``set_adapter``), ``disable_adapters`` and merged adapters."""
    if (building := _building(required=False)) is not None:  # without it, fused optimizers' steps go unseen
        building.watch_optimizer_steps()
    params = tuple((id(p), p._version, getattr(p, "_hf_bridges_steps", 0)) for p in encoder.parameters())
    tuners = tuple(
        (id(m), tuple(m.active_adapters), bool(m.disable_adapters), tuple(m.merged_adapters))
        for m in encoder.modules()
        if is_tuner_layer(m)
    )
    return params, tuners


# ----------------------------------------------------------------------------------------------- checkpoint keys
# The head is registered as ``score`` (peft's SEQ_CLS recipe then trains and saves all of it) and its MLP as
# ``score.mlp``; files keep the historic names. Old key -> new key, first match wins (peft's adapter key_mapping):
_KEY_RENAMES = {r"^head\.classifier\.": "score.mlp.", r"^head\.": "score."}
# The same as a chain for the transformers >= 5 loader (each rename sees the previous one's output); the saver
# applies it reversed, so model.safetensors keeps ``head.*`` / ``head.classifier.*`` and older releases read it.
_LOADER_RENAMES = ((r"^head\.", "score."), (r"^score\.classifier\.", "score.mlp."))
# from_pretrained arguments that say where the weights came from: the lazily loaded tokenizer comes from there too
_PUSH_ARGS = ("push_to_hub", "repo_id", "token", "private", "commit_message", "create_pr")
_TOKENIZER_SOURCE = ("revision", "subfolder", "token", "cache_dir", "local_files_only", "force_download", "proxies")


def register_key_renames(class_name: str) -> None:
    """Teach the transformers loader (and, reversed, the saver) the renames, by class name: that is what makes it
    apply them to custom and remote-code classes."""
    try:
        from transformers.conversion_mapping import register_checkpoint_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
    except ImportError:  # transformers 4.x: reads the `_checkpoint_conversion_mapping` class attribute instead
        return
    register_checkpoint_conversion_mapping(
        class_name, [WeightRenaming(source, target) for source, target in _LOADER_RENAMES], overwrite=True
    )


# ------------------------------------------------------------------------------------------------------- the model
class BridgePreTrainedModel(PreTrainedModel):
    """The bridge contract, written once; subclasses declare their inputs (see the module docstring).

    The head is registered as ``score`` (the transformers name of a sequence classification head, which peft's
    SEQ_CLS recipe wraps, trains and saves whole); ``model.head`` reads and assigns it. Files keep the historic
    ``head.*`` keys (``_LOADER_RENAMES``), so older releases read what this one writes.
    """

    config_class = BridgeConfig
    base_model_prefix = "bridge"
    main_input_name = "input_ids"
    input_names: tuple = ("input_ids", "attention_mask")  # positional order of embed(...)
    anchor_store_class: type = AnchorStore
    _no_encoder_hint = "set anchor embeddings with set_anchor_embeddings(...)"
    _with_classifier = False
    _anchors_not_set = "anchor embeddings are not set: call refresh_anchors() or set_anchor_embeddings()"
    # The head and anchor embeddings stay float32 under from_pretrained(..., dtype=torch.bfloat16 / float16); the
    # head casts its inputs at the boundary (docs/method.md#precision). Regexes on the loaded (renamed) keys.
    _keep_in_fp32_modules_strict = [r"^score\.", r"^anchors\.embeddings$"]
    _checkpoint_conversion_mapping = dict(_KEY_RENAMES)  # peft's PeftModel.from_pretrained default key_mapping
    stitch_report = None  # set by from_encoder(..., head=...): how well this encoder's anchor space matches the head

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_key_renames(cls.__name__)

    def __init__(self, config: BridgeConfig, encoder: nn.Module | None = None):
        super().__init__(config)
        if encoder is None and config.encoder is not None:
            from transformers import AutoModel  # here, not at import: hf_bridges registers when Auto classes load

            dtype = config.dtype  # from_pretrained(..., dtype=...) sets it: build the encoder in it
            dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
            encoder = AutoModel.from_config(config.encoder, **({"dtype": dtype} if dtype is not None else {}))
        self.encoder = encoder
        self.anchors = self.anchor_store_class.from_config(config)
        self.head = RelativeProductHead(  # embedding_dim: the aligned component's input width
            config.head,
            config.num_anchors,
            config.num_labels if self._with_classifier else None,
            embedding_dim=config.hidden_size or None,
        )
        self.tokenizer = None  # set by from_encoder; saved next to the weights when present
        self.add_model_tags(["hf-bridges", "relative-representations"])  # Trainer / push_to_hub cards
        # a raw load_state_dict of a file's keys (Trainer's best-model reload, Accelerate) finds ``score``
        self.register_load_state_dict_pre_hook(_rename_prefix("head.", "score."))
        self._anchor_snapshot: tuple | None = None
        self._apply_freeze()
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (MLPSumAggregation, WeightedAggregation)):
            module.reset_parameters(init)  # the module owns its init; `init` skips weights loaded from a file
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    @property
    def head(self) -> RelativeProductHead:
        return self._modules["score"]

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__("score" if name == "head" else name, value)

    # ------------------------------------------------------------------------ building: the installed package
    @classmethod
    def from_encoder(cls, encoder: Any, anchors: Sequence[Any] | None = None, **kwargs: Any) -> BridgePreTrainedModel:
        """Wrap ``encoder`` (Hub id, folder, model or ``SentenceTransformer``) and embed ``anchors`` with it, or attach a
        trained head with ``head=``. Keyword arguments: ``hf_bridges.building.text.build_bridge`` (images:
        ``building.vision.build_bridge``; ``head=``: ``hf_bridges.heads.attach.attach_head``)."""
        return _building().from_encoder(cls, encoder, anchors, **kwargs)

    def save_head(self, save_directory: Any, **kwargs: Any) -> Any:
        """Write only the head (weights, raw anchors, config, anchor space, card) to a folder, atomically."""
        return _building().save_head(self, save_directory, **kwargs)

    def push_head_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Push only the head to a Hub model repo; attach it anywhere with ``from_encoder(encoder, head=repo_id)``."""
        return _building().push_head_to_hub(self, repo_id, **kwargs)

    def stitch_anchor_embeddings(
        self, embeddings: torch.Tensor, *, translation: str = "auto", relative_space: str = "auto"
    ) -> dict[str, Any] | None:
        """Switch to another encoder given only its embeddings of the stored anchors (k, D'): they replace the current
        ones and an aligned head's map is fitted on them (``set_anchor_embeddings``: same encoder, no refit)."""
        return _building().stitch_anchor_embeddings(
            self, embeddings, translation=translation, relative_space=relative_space
        )

    # ---------------------------------------------------------------------------------------- saving and loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        """transformers' loader; with the package installed it also names a corrupted weights file and warns about
        an interrupted save. The encoder is frozen as ``config.freeze_encoder`` says (adapters loaded with the
        model are left alone), and the encoder state the saved anchors match is remembered."""
        building = _building(required=False)
        load = super().from_pretrained
        if building is not None:
            model = building.checked_load(load, pretrained_model_name_or_path, args, kwargs)
        else:
            model = load(pretrained_model_name_or_path, *args, **kwargs)
        bridge = model[0] if isinstance(model, tuple) else model  # output_loading_info=True
        tuned = bridge.encoder is not None and any(is_tuner_layer(m) for m in bridge.encoder.modules())
        if bridge.encoder is not None and not tuned:
            bridge._apply_freeze()
        # its tokenizer is loaded on first use (tokenize, encode, save, push) from the same place and revision
        bridge._tokenizer_source = {key: kwargs[key] for key in _TOKENIZER_SOURCE if kwargs.get(key) is not None}
        if bridge.encoder is not None and bool(bridge.anchors.is_fresh):  # with adapters loaded (an adapter folder)
            bridge._anchor_snapshot = ("adapters",) if tuned else bridge._encoder_state()  # re-embed: base anchors
        return model

    @staticmethod
    def _finalize_model_loading(model, load_config, loading_info):
        """transformers 5 replaces every parameter after ``__init__`` (``requires_grad=True`` again): freeze once
        the weights are in, before ``from_pretrained`` sets eval mode, loads adapters or dispatches."""
        loading_info = PreTrainedModel._finalize_model_loading(model, load_config, loading_info)
        if hasattr(model, "_apply_freeze"):
            model._apply_freeze()
        return loading_info

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """The tokenizer saved too; with the package installed the save is staged (never a truncated file, config
        last) and a card written. A bridge without a name takes the folder's (peft adapters then record a loadable
        ``base_model_name_or_path``). Every Auto class is in ``auto_map``, for trust_remote_code users."""
        self.config.auto_map = {
            "AutoConfig": "configuration_bridge.BridgeConfig",
            "AutoModel": "modeling_bridge.BridgeModel",
            "AutoModelForSequenceClassification": "modeling_bridge.BridgeForSequenceClassification",
            "AutoModelForImageClassification": "modeling_bridge.BridgeForImageClassification",
        }
        main, push = kwargs.get("is_main_process", True), kwargs.get("push_to_hub")
        building = _building(required=False)
        if main and not push and building is not None:
            result = building.staged_save(self, super().save_pretrained, save_directory, args, kwargs)
        else:  # rank > 0 writes nothing of its own; a push names the repo after the folder
            result = super().save_pretrained(save_directory, *args, **kwargs)
            tokenizer = self._get_tokenizer() if main else None  # a reloaded bridge's is loaded lazily
            if tokenizer is not None:  # a push is done by now: the tokenizer pushes its own files
                tokenizer.save_pretrained(save_directory, **{k: kwargs[k] for k in _PUSH_ARGS if k in kwargs})
        if not self.__dict__.get("name_or_path"):
            import os

            self.name_or_path = os.path.abspath(os.fspath(save_directory))  # peft reads __dict__["name_or_path"]
        return result

    def _upload_modified_files(self, working_dir, repo_id, *args, **kwargs):
        """transformers' push step: the README it put in ``working_dir`` becomes the bridge's card first."""
        building = _building(required=False)
        if building is not None:
            building.write_model_card(self, working_dir, repo_id)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    # ------------------------------------------------------------------------------------------- training habits
    def _apply_freeze(self) -> None:
        """``config.freeze_encoder`` is the source of truth: no encoder parameter trains while it is set."""
        if self.encoder is not None and self.config.freeze_encoder:
            self.encoder.requires_grad_(False)

    def unfreeze_encoder(self) -> None:
        """Let gradients reach the encoder (anchors are then re-embedded whenever its weights change)."""
        self.config.freeze_encoder = False
        self.encoder.requires_grad_(True)

    def train(self, mode: bool = True) -> BridgePreTrainedModel:
        """A frozen encoder stays in eval mode (no dropout), so training sees the features inference sees and the
        anchors were embedded with; a trainable or LoRA encoder follows ``mode``."""
        super().train(mode)
        if mode and self.encoder is not None and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()
        return self

    @property
    def supports_gradient_checkpointing(self) -> bool:
        """The encoder's: checkpointing is delegated to it (the head is small; its activations are kept)."""
        encoder = self.__dict__.get("_modules", {}).get("encoder")
        return bool(getattr(encoder, "supports_gradient_checkpointing", False))

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict | None = None, **kwargs: Any
    ) -> Any:
        """Checkpoint the encoder's layers (LoRA or an unfrozen encoder); Trainer's ``gradient_checkpointing``."""
        if not self.supports_gradient_checkpointing:
            encoder = type(self.encoder).__name__ if self.encoder is not None else "no encoder"
            raise ConfigError(
                f"activation checkpointing is delegated to the encoder, and {encoder} does not support it; "
                "leave gradient_checkpointing off (a frozen encoder keeps no activations to save)"
            )
        return super().activation_checkpointing_enable(activation_checkpointing_kwargs, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        """The encoder's (peft and ``enable_input_require_grads`` look for them)."""
        if self.encoder is None or not hasattr(self.encoder, "get_input_embeddings"):
            raise NotImplementedError(f"{type(self).__name__} has no input embeddings (no transformers encoder)")
        return self.encoder.get_input_embeddings()

    # ---------------------------------------------------------------------------------------------------- anchors
    def _encoder_state(self) -> tuple:
        return encoder_fingerprint(self.encoder)

    def _check_anchor_inputs(self) -> None:
        """Raise when the stored anchors cannot be re-embedded (none stored, no tokenizer / processor, ...)."""
        if self.config.num_anchors < 2 or not self.anchors.has_inputs():
            raise InputError("this model holds no anchor inputs: build it with from_encoder(encoder, anchors=...)")

    def _anchor_inputs(self, start: int, stop: int) -> dict[str, Any]:
        """Encoder inputs for the stored anchors ``start:stop``."""
        return self.anchors.model_inputs(start, stop)

    @torch.no_grad()
    def refresh_anchors(self) -> torch.Tensor:
        """Embed the stored anchor inputs with the current encoder (in eval mode) and cache the result."""
        if self.encoder is None:
            raise InputError(f"this bridge has no encoder: {self._no_encoder_hint}")
        self._check_anchor_inputs()
        was_training = self.encoder.training
        self.encoder.eval()
        name = self.config.encoder_name_or_path or self.config.encoder_class or type(self.encoder).__name__
        desc, size = f"embedding {self.config.num_anchors} anchors with {name}", self.config.anchor_batch_size
        try:
            if isinstance(self.anchors, AnchorStore):  # token ids: length-sorted batches, padding trimmed
                embeddings = embed_in_length_order(
                    self.embed, self.anchors.input_ids, self.anchors.attention_mask, size, desc
                )
            else:  # images, tensors: in stored order
                inputs = lambda rows: self._anchor_inputs(int(rows[0]), int(rows[-1]) + 1)
                embeddings = embed_batches(self.embed, self.config.num_anchors, size, inputs, desc, None)
        finally:
            self.encoder.train(was_training)
        self.set_anchor_embeddings(embeddings)
        return self.anchors.embeddings

    def set_anchor_embeddings(self, embeddings: torch.Tensor) -> None:
        """Use precomputed anchor embeddings (k, dim), e.g. from a cache or a non-transformers encoder."""
        check_anchor_embeddings(embeddings)
        if embeddings.shape[0] != self.config.num_anchors:
            raise InputError(f"expected {self.config.num_anchors} anchor embeddings, got {embeddings.shape[0]}")
        # A new tensor, not an in-place copy: a pending backward may still need the old one.
        self.anchors.embeddings = embeddings.detach().to(self.anchors.embeddings.device, self.anchors.embeddings.dtype)
        self.anchors.is_fresh.fill_(True)
        if self.config.encoder is None:  # features-only / plain-module bridge: the anchors define the width (saved)
            self.config.features_dim = int(embeddings.shape[1])
        self._anchor_snapshot = self._encoder_state() if self.encoder is not None else ()

    @property
    def anchor_embeddings(self) -> torch.Tensor:
        """The cached anchor embeddings, re-embedded first if the encoder's weights changed since. Under
        ``torch.compile`` a frozen encoder is not re-checked (call ``refresh_anchors()`` after changing its weights
        by hand) and the "not set" check runs inside the graph: no graph break."""
        compiling = torch.compiler.is_compiling()
        encoder, auto = self.encoder, self.config.anchor_refresh == "auto"
        if auto and encoder is not None and (not compiling or any(p.requires_grad for p in encoder.parameters())):
            state = self._encoder_state()
            if self._anchor_snapshot is None and bool(self.anchors.is_fresh):
                self._anchor_snapshot = state  # loaded with the weights they were computed from
            if self._anchor_snapshot != state:
                self.refresh_anchors()
        if compiling:
            torch._assert_async(self.anchors.is_fresh, self._anchors_not_set)
        elif not bool(self.anchors.is_fresh):
            raise InputError(self._anchors_not_set)
        return self.anchors.embeddings

    # ---------------------------------------------------------------------------------------------------- forward
    def _encode(self, input_ids=None, attention_mask=None, **encoder_inputs: Any) -> torch.Tensor:
        """Call the encoder on one batch and pool: (B, D)."""
        check_batch(input_ids)  # no rows, or no tokens
        input_ids, attention_mask, encoder_inputs = truncate_rows(
            input_ids, attention_mask, encoder_inputs, self.config.max_seq_length, self._get_tokenizer
        )
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **encoder_inputs)
        return get_pooling(self.config.pooling)(outputs, attention_mask)

    def embed(self, *args: Any, **inputs: Any) -> torch.Tensor:
        """Pooled absolute embeddings of a batch (positional arguments in ``input_names`` order); no graph is
        kept when the encoder is frozen."""
        refuse_texts(args, inputs)  # texts: an error naming encode()
        if len(args) > len(self.input_names):
            raise TypeError(f"embed() takes at most {len(self.input_names)} positional inputs {self.input_names}")
        for name, value in zip(self.input_names, args):
            if name in inputs:
                raise TypeError(f"embed() got {name!r} twice")
            inputs[name] = value
        if self.encoder is None:
            raise InputError(
                f"this bridge has no encoder: pass features=... (precomputed embeddings) or {self._no_encoder_hint}"
            )
        trainable = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            embeddings = self._encode(**inputs)
        normalize = self.config.normalize_embeddings  # a sentence-transformers Normalize module
        return nn.functional.normalize(embeddings, p=2, dim=-1) if normalize else embeddings

    def forward_features(
        self,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        return_subspaces: bool = False,
        **inputs: Any,
    ) -> tuple[torch.Tensor, Any]:
        """(embeddings, r(z)): embed the inputs (unless ``features`` are given), then represent them relative to
        the anchors; with ``return_subspaces``, r(z) is ``(representation, normalised subspaces)``. Unlike timm's
        ``forward_features`` (unpooled backbone features), this returns the pooled embedding and r(z)."""
        inputs = {key: value for key, value in inputs.items() if value is not None}
        if features is None:
            if not inputs:
                raise InputError(
                    f"pass {self.main_input_name} (what the encoder takes) or features (precomputed embeddings)"
                )
            if self.encoder is None:
                raise InputError("this bridge has no encoder: pass features=... (precomputed embeddings)")
            features = self.embed(**inputs)
        if subspace_weights is None and self.config.subspace_weights is not None:
            subspace_weights = torch.tensor(self.config.subspace_weights)
        features = check_features(features)
        return features, self.head.represent(features, self.anchor_embeddings, subspace_weights, return_subspaces)

    def forward_head(self, representation: torch.Tensor) -> torch.Tensor:
        """Logits from r(z) (timm's ``forward_head`` pools features first; r(z) is already one vector per input)."""
        classifier = self.get_classifier()
        if classifier is None:
            raise InputError("this bridge has no classifier (a representation model); use reset_classifier(num_labels)")
        return classifier(representation.to(self.head.compute_dtype))

    def get_classifier(self) -> nn.Module | None:
        return self.head.classifier

    def reset_classifier(self, num_labels: int) -> None:
        """A fresh classifier for ``num_labels`` classes (same hidden width and dropout); relative part kept."""
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise InputError(f"num_labels must be a positive integer, got {num_labels!r}")
        self.head.reset_classifier(num_labels)  # one MLP per component for combine='sum'
        self.config.num_labels = num_labels

    def _relative(self, input_ids, attention_mask, features, subspace_weights, encoder_inputs, return_subspaces=False):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **encoder_inputs}
        return self.forward_features(features, subspace_weights, return_subspaces, **inputs)

    def _represent(self, embeddings, rel, output_subspaces: bool, return_dict) -> Any:
        representation, subspaces = rel if output_subspaces else (rel, None)
        output = BridgeModelOutput(relative_representation=representation, embeddings=embeddings, subspaces=subspaces)
        return output if return_dict is not False else output.to_tuple()

    def _classify(self, embeddings, representation, labels, output_representations: bool, return_dict) -> Any:
        logits = check_finite(self.forward_head(representation))  # finite features x 1e20 overflow float32
        loss = self.compute_loss(logits, labels) if labels is not None else None
        output = BridgeClassifierOutput(
            loss=loss,
            logits=logits,
            relative_representation=representation if output_representations else None,
            embeddings=embeddings if output_representations else None,
        )
        return output if return_dict is not False else output.to_tuple()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_labels = self.config.num_labels
        check_class_labels(labels, logits, num_labels, self.config.problem_type)
        if self.config.problem_type is None:  # inferred as transformers' sequence classifiers do
            kind = "single_label" if labels.dtype in (torch.long, torch.int) else "multi_label"
            self.config.problem_type = "regression" if num_labels == 1 else f"{kind}_classification"
        if self.config.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        if self.config.problem_type == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        labels = labels.view(-1)
        if labels.shape[0] != logits.shape[0]:
            raise InputError(f"got {labels.shape[0]} labels for a batch of {logits.shape[0]} samples")
        if torch.compiler.is_compiling():  # checked inside the graph (no .item(), no graph break)
            torch._assert_async(
                ((labels >= 0) & (labels < num_labels)).all(), f"labels must be in [0, {num_labels - 1}]"
            )
        elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise InputError(
                f"labels must be in [0, {num_labels - 1}] for num_labels={num_labels}; got values from "
                f"{int(labels.min())} to {int(labels.max())} (set num_labels or id2label to cover every class)"
            )
        return nn.functional.cross_entropy(logits, labels)

    # ------------------------------------------------------------------------------------------------------- text in
    def tokenize(self, texts: str | Sequence[str], **kwargs: Any) -> Any:
        """Tokenise ``texts`` as the anchors were: ``config.input_prefix`` prepended, padded, truncated to
        ``max_seq_length``, as PyTorch tensors (``kwargs`` override these tokenizer arguments)."""
        if self._get_tokenizer() is None:
            raise InputError("this bridge has no tokenizer: set bridge.tokenizer, or build it with from_encoder")
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
                from transformers import AutoTokenizer  # here: hf_bridges registers when transformers' Auto loads

                self.tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, **source)
        return self.tokenizer

    # The sentence-transformers / SetFit text API, implemented once in the installed package (hf_bridges.building.
    # text_api) over forward: texts tokenised once, length-sorted batches, rows back in input order.
    def encode(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """Embed texts as ``SentenceTransformer.encode`` does (``batch_size``, ``output_value``:
        ``"sentence_embedding"`` or ``"relative_representation"``, ``convert_to_numpy`` / ``convert_to_tensor``,
        ``normalize_embeddings``, ``show_progress_bar``)."""
        return _building().encode(self, sentences, **kwargs)

    def predict(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """Predictions as SetFit's ``predict``: label names (``use_labels=True``) or class ids (``as_numpy``)."""
        return _building().predict(self, inputs, **kwargs)

    def predict_proba(self, inputs: str | Sequence[str], **kwargs: Any) -> Any:
        """Class probabilities (n, num_labels) as SetFit's ``predict_proba`` (sigmoid for multi-label)."""
        return _building().predict_proba(self, inputs, **kwargs)


class BridgeModel(BridgePreTrainedModel):
    """Encoder + relative product representation r(z), without a task head."""

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_subspaces: bool = False,
        return_dict: bool | None = None,
        **encoder_inputs: Any,
    ) -> BridgeModelOutput:
        embeddings, rel = self._relative(
            input_ids, attention_mask, features, subspace_weights, encoder_inputs, return_subspaces=output_subspaces
        )
        return self._represent(embeddings, rel, output_subspaces, return_dict)


class BridgeForSequenceClassification(BridgePreTrainedModel):
    """Encoder + relative product head + MLP classifier; returns ``loss`` when given ``labels`` (Trainer-ready)."""

    _with_classifier = True

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_representations: bool = False,
        return_dict: bool | None = None,
        **encoder_inputs: Any,
    ) -> BridgeClassifierOutput:
        embeddings, representation = self._relative(
            input_ids, attention_mask, features, subspace_weights, encoder_inputs
        )
        return self._classify(embeddings, representation, labels, output_representations, return_dict)


class BridgeForImageClassification(BridgePreTrainedModel):
    """Vision encoder + relative product head + MLP classifier; ``forward(pixel_values, labels)`` (Trainer-ready).
    Anchor images are stored as ``uint8`` (k, C, H, W), so any encoder's processor runs on them (docs/method.md)."""

    main_input_name = "pixel_values"
    input_names = ("pixel_values",)
    anchor_store_class = ImageAnchorStore
    _with_classifier = True

    def __init__(self, config: BridgeConfig, encoder: nn.Module | None = None):
        if config.modality != "image":
            raise InputError(
                f"this config is a {config.modality!r} bridge, not an image one: load it with "
                "BridgeForSequenceClassification (text) or ModuleBridgeForClassification (features)"
            )
        super().__init__(config, encoder=encoder)
        self.image_processor = None  # set by from_encoder / from_pretrained; saved next to the weights

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: Any, *args: Any, image_processor: Any = None, **kwargs: Any
    ) -> Any:
        bridge = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if image_processor is None:
            from transformers import AutoImageProcessor  # here: see _encode's AutoModel

            try:  # saved next to the weights by save_pretrained
                image_processor = AutoImageProcessor.from_pretrained(
                    pretrained_model_name_or_path, revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir")
                )
            except (OSError, ValueError):
                image_processor = None  # only needed to re-embed the anchors; refresh_anchors says so
        bridge.image_processor = image_processor
        return bridge

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.image_processor is not None and kwargs.get("is_main_process", True):
            self.image_processor.save_pretrained(save_directory)
        return result

    @staticmethod
    def _process(processor: Any, arrays: list[np.ndarray], channels: int) -> torch.Tensor:
        """HWC uint8 arrays -> ``pixel_values`` through the encoder's processor (grayscale repeated to RGB)."""
        if channels == 3:
            arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
        bad = next((a.shape[2] for a in arrays if a.shape[2] != channels), None)
        if bad is not None:
            raise InputError(f"images have {bad} channels but the encoder takes {channels}; convert them first")
        return processor(images=arrays, return_tensors="pt")["pixel_values"]

    def preprocess(self, images: Any) -> torch.Tensor:
        """Raw images (PIL, arrays, uint8 or 0-1 float tensors, encoded bytes) -> ``pixel_values`` for this encoder
        (``hf_bridges.building.vision.preprocess``; without the package, call the image processor yourself)."""
        return _building().preprocess(self, images)

    def _check_anchor_inputs(self) -> None:
        if self.image_processor is None:
            raise InputError(
                "re-embedding the anchor images needs the encoder's image processor: set bridge.image_processor "
                "(AutoImageProcessor.from_pretrained(<encoder id>)) or pass image_processor= to from_pretrained"
            )

    def _anchor_inputs(self, start: int, stop: int) -> dict[str, Any]:
        arrays = [image.permute(1, 2, 0).numpy() for image in self.anchors.pixels[start:stop].cpu()]
        return {"pixel_values": self._process(self.image_processor, arrays, self.config.encoder.num_channels)}

    def _encode(self, pixel_values: torch.Tensor | None = None, **encoder_inputs: Any) -> torch.Tensor:
        """Pooled embeddings of a batch of ``pixel_values`` (B, C, H, W)."""
        if pixel_values is None or encoder_inputs.get("input_ids") is not None:
            raise InputError("an image bridge takes pixel_values (see preprocess(images)), not input_ids")
        if pixel_values.dim() != 4 or pixel_values.shape[0] == 0:
            raise InputError(
                f"pixel_values must be a non-empty (batch, channels, height, width) tensor, got "
                f"shape {tuple(pixel_values.shape)}"
            )
        channels = self.config.encoder.num_channels
        if pixel_values.shape[1] != channels:
            raise InputError(
                f"pixel_values have {pixel_values.shape[1]} channels, the encoder takes {channels}; "
                "pass the images through bridge.preprocess(images)"
            )
        try:
            pixel_values = pixel_values.to(self.encoder.device, self.encoder.dtype)  # processed anchors are on CPU
            outputs = self.encoder(pixel_values=pixel_values, return_dict=True)
        except (RuntimeError, ValueError) as error:
            raise InputError(
                f"{type(self.encoder).__name__} failed on pixel_values of shape {tuple(pixel_values.shape)}: {error}; "
                "pass the images through bridge.preprocess(images)"
            ) from error
        return get_pooling(self.config.pooling)(outputs, None)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_representations: bool = False,
        return_dict: bool | None = None,
        input_ids: torch.Tensor | None = None,
    ) -> BridgeClassifierOutput:
        if input_ids is not None:
            raise InputError("an image bridge takes pixel_values (see preprocess(images)), not input_ids")
        if features is None and pixel_values is None:
            raise InputError("pass pixel_values (see preprocess(images)) or features (precomputed embeddings)")
        features, representation = self.forward_features(features, subspace_weights, pixel_values=pixel_values)
        return self._classify(features, representation, labels, output_representations, return_dict)
