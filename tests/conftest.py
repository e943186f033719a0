"""Shared fixtures (tiny random encoders, a tokenizer, anchor texts, one-thread mode); the helpers they use are in
helpers.py, which tests import directly (``from helpers import make_encoder``), never from conftest."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from helpers import make_encoder, make_tokenizer, topic_texts
from transformers import PreTrainedTokenizerFast


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


@pytest.fixture(autouse=True, scope="session")
def _anchor_cache_in_tmp(tmp_path_factory):
    """Attaches reuse anchor embeddings from a cache: the suite's lives in a temporary folder, not in HF_HOME."""
    os.environ.setdefault("HF_BRIDGES_ANCHOR_CACHE", str(tmp_path_factory.mktemp("anchor-cache")))
