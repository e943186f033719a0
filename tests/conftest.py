"""Shared fixtures: tiny random encoders and a tokenizer built in the test (no Hub files), isolated HF caches."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

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


def make_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


def make_encoder(seed: int = 0, hidden_size: int = 32, layers: int = 2) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden_size, max_position_embeddings=64,
    )
    return BertModel(config).eval()


def topic_texts(n_per_class: int, seed: int = 0, topic_words: int = 6, noise_words: int = 2) -> tuple[list[str], list[int]]:
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


@pytest.fixture()
def one_thread():
    """For tiny models: extra intra-op threads only spin on a shared 2-core CPU (up to 35x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> str:
    """A tiny BERT saved with its tokenizer, so it loads by path like any Hub encoder."""
    path = tmp_path_factory.mktemp("tiny-bert")
    make_encoder().save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def anchor_texts() -> list[str]:
    texts, _ = topic_texts(4, seed=123)
    return texts
