"""Test helpers: a tiny word-level tokenizer, tiny random BERT encoders and a learnable 5-topic text task.

Built in the test (no Hub files). Import them with ``from helpers import ...``; fixtures live in conftest.py.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

__all__ = ["TOPICS", "WORDS", "make_encoder", "make_tokenizer", "topic_texts"]

WORDS = (
    "the a market stock bank shares profit economy growth film music actor award band show star election "
    "minister party vote government law match team goal player season win cup phone software internet "
    "computer games chip data"
).split()
TOPICS = {
    0: "market stock bank shares profit economy growth",
    1: "film music actor award band show star",
    2: "election minister party vote government law",
    3: "match team goal player season win cup",
    4: "phone software internet computer games chip data",
}


def make_tokenizer(words=WORDS) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` (in that id order) with the BERT special tokens first."""
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def make_encoder(seed: int = 0, hidden_size: int = 32, layers: int = 2) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=64,
    )
    return BertModel(config).eval()


def topic_texts(
    n_per_class: int, seed: int = 0, topic_words: int = 6, noise_words: int = 2
) -> tuple[list[str], list[int]]:
    """Short texts whose words come mostly from one topic: a learnable 5-class task (harder with more noise)."""
    g = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        pool = words.split()
        for _ in range(n_per_class):
            idx = torch.randint(len(pool), (topic_words,), generator=g).tolist()
            noise = torch.randint(len(WORDS), (noise_words,), generator=g).tolist()
            texts.append(" ".join([pool[i] for i in idx] + [WORDS[j] for j in noise]))
            labels.append(label)
    return texts, labels


def st_folder(root, name: str, seed: int, width: int, prompts: dict | None = None, encoder: BertModel | None = None):
    """A real sentence-transformers folder (Transformer -> mean Pooling -> Normalize) over a tiny random BERT
    (``make_encoder(seed, width)`` unless ``encoder`` is given); its path."""
    import sentence_transformers as st

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

    bert = root / f"{name}-bert"
    (encoder if encoder is not None else make_encoder(seed, hidden_size=width)).save_pretrained(bert)
    make_tokenizer().save_pretrained(bert)
    modules = [Transformer(str(bert), max_seq_length=16), Pooling(width, pooling_mode="mean"), Normalize()]
    st.SentenceTransformer(modules=modules, prompts=prompts, device="cpu").save(str(root / name))
    return str(root / name)
