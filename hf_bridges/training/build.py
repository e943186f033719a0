"""Turn a :class:`TrainConfig` into data, a tokenizer and a bridge model (LoRA applied when configured)."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import datasets
import torch
from torch import nn

from ..building.loading import load_encoder, load_tokenizer
from ..data import load_labelled_dataset
from ..data.anchors import select_alignment_set, select_anchors
from ..logging import get_logger
from ..modeling.modeling_bridge import BridgeForSequenceClassification
from .config import TrainConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
logger = get_logger(__name__)


def load_data(cfg: TrainConfig) -> datasets.DatasetDict:
    """The registered dataset, cut to ``max_train_samples`` / ``max_eval_samples`` by a seeded shuffle."""
    data = load_labelled_dataset(cfg.dataset, **cfg.dataset_kwargs)
    if "train" not in data or "test" not in data:
        raise ValueError(f"dataset {cfg.dataset!r} must have train and test splits, got {list(data)}")
    for split, limit in (("train", cfg.max_train_samples), ("test", cfg.max_eval_samples)):
        if limit is not None and limit < len(data[split]):
            data[split] = data[split].shuffle(seed=cfg.seed).select(range(limit))
    return data


def build_word_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BERT-style word-level tokenizer over the most frequent training words.

    Built in pure Python with a deterministic order (count, then word), so every process of a distributed run
    builds the same vocabulary without exchanging files; used for random encoders (tiny/CI runs) only.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for text in texts:
        counts.update(word for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(vocab_size - len(SPECIAL_TOKENS), 1)]
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer, core.pre_tokenizer = normalizer, pre
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_tokenizer(cfg: TrainConfig, train_texts: list[str]) -> PreTrainedTokenizerBase:
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    if cfg.encoder:
        return load_tokenizer(cfg.encoder)
    return build_word_tokenizer(train_texts, cfg.tokenizer_vocab_size)


def build_encoder(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    if cfg.encoder:
        return load_encoder(cfg.encoder)
    from transformers import AutoConfig, AutoModel

    kwargs = dict(cfg.encoder_config)
    kwargs.setdefault("vocab_size", len(tokenizer))
    kwargs.setdefault("max_position_embeddings", max(cfg.max_seq_length, 8))
    torch.manual_seed(cfg.seed)  # the same random encoder in every process and every resume
    return AutoModel.from_config(AutoConfig.for_model(**kwargs))


def build_model(cfg: TrainConfig, train: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> nn.Module:
    """A ``BridgeForSequenceClassification`` whose anchors are a seeded stratified pick of the training texts
    (and, with ``alignment_inputs``, whose alignment set is a seeded pick of the others)."""
    labels = list(train["label"])
    picks = select_anchors("stratified", min(cfg.num_anchors, len(train)), cfg.anchor_seed, labels=labels)
    label_names = train.features["label"].names if hasattr(train.features["label"], "names") else None
    num_labels = len(label_names) if label_names else int(max(labels)) + 1
    id2label = {i: name for i, name in enumerate(label_names)} if label_names else None
    extra = select_alignment_set(len(train), picks, cfg.alignment_inputs, cfg.anchor_seed)
    if len(picks) < cfg.num_anchors or len(extra) < cfg.alignment_inputs:  # both come from the training rows
        logger.warning(
            "the %d training rows hold %d anchor(s) and %d alignment input(s) of the %d and %d asked for "
            "(num_anchors, alignment_inputs): lower them, or raise max_train_samples",
            len(train),
            len(picks),
            len(extra),
            cfg.num_anchors,
            cfg.alignment_inputs,
        )
    model = BridgeForSequenceClassification.from_encoder(
        build_encoder(cfg, tokenizer),
        anchors=[train[i]["text"] for i in picks],
        alignment_inputs=[train[i]["text"] for i in extra] if extra else None,
        anchor_labels=[labels[i] for i in picks],
        tokenizer=tokenizer,
        pooling=cfg.pooling,
        max_seq_length=cfg.max_seq_length,
        head_config=cfg.head,
        num_labels=num_labels,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()} if id2label else None,
        freeze_encoder=cfg.freeze_encoder or cfg.lora is not None,
        anchor_refresh="auto" if cfg.anchor_refresh == "steps" else cfg.anchor_refresh,  # steps: see training.loop
    )
    if cfg.encoder is None:
        model.config.encoder_name_or_path = None
    pooler = getattr(model.encoder, "pooler", None)
    if cfg.pooling != "pooler" and isinstance(pooler, nn.Module):
        # Unused by this pooling: trainable, it would get no gradient and DDP would stop at the second step.
        pooler.requires_grad_(False)
    if cfg.lora is not None:
        model = apply_lora(model, **cfg.lora, skip_pooler=cfg.pooling != "pooler")
    return model


def lora_target_names(encoder: nn.Module) -> list[str]:
    """Leaf names of the encoder's layers LoRA can adapt (Linear, Embedding, Conv1d/GPT-2 Conv1D)."""
    kinds = (nn.Linear, nn.Embedding, nn.Conv1d)
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in encoder.named_modules()
        if name and (isinstance(module, kinds) or type(module).__name__ == "Conv1D")
    }
    return sorted(names)


def apply_lora(
    model: BridgeForSequenceClassification,
    target_modules: list[str] | str,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    bias: str = "none",
    skip_pooler: bool = True,
) -> Any:
    """LoRA on the encoder only (regex-scoped to ``encoder.``), the relative head fully trained and saved.

    The head (registered as ``score``) goes in ``modules_to_save``; the anchor buffers stay outside it (``model.anchors``) and are
    re-embedded through the LoRA-adapted encoder whenever its weights change (``anchor_refresh``).
    """
    from peft import LoraConfig, get_peft_model

    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    module_names = [name for name, _ in model.encoder.named_modules() if name]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in module_names)]
    if missing:
        raise ValueError(
            f"LoRA target module(s) {missing} not found in the encoder ({type(model.encoder).__name__}); "
            f"layers LoRA can adapt there: {lora_target_names(model.encoder)}"
        )
    scope = r"encoder\.(?!pooler\.)" if skip_pooler else r"encoder\."  # an unused pooler must not get LoRA
    pattern = scope + r"(.*\.)?(" + "|".join(re.escape(t) for t in targets) + ")"
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias=bias, target_modules=pattern, modules_to_save=["score"]
    )
    return get_peft_model(model, config)
