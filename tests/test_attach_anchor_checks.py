"""The head records how its tokenizer maps the anchors; an attach whose tokenizer maps them differently (a
same-size permuted vocabulary) says so and is never called compatible. Degenerate anchor sets are warned."""

from __future__ import annotations

import json
import random
import warnings

import pytest
import torch
from helpers import WORDS, make_encoder, make_tokenizer
from transformers import PreTrainedTokenizerFast

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.format import CONFIG_NAME, read_head


def permuted_tokenizer(seed: int = 0) -> PreTrainedTokenizerFast:
    """The test tokenizer's words with shuffled ids: the same size, the same special tokens."""
    words = list(WORDS)
    random.Random(seed).shuffle(words)
    return make_tokenizer(words)


@pytest.fixture
def head_folder(tokenizer, anchor_texts, tmp_path):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=3
    ).eval()
    return model.save_head(tmp_path / "head")


def test_head_records_the_tokenizer_fingerprint_and_old_heads_still_load(head_folder, tokenizer, tmp_path):
    config = json.loads((head_folder / CONFIG_NAME).read_text())
    assert config["tokenizer"]["vocab_size"] == len(tokenizer) and len(config["tokenizer"]["anchor_ids_sha256"]) == 64
    del config["tokenizer"]  # a head written before the fingerprint existed
    (head_folder / CONFIG_NAME).write_text(json.dumps(config))
    bundle = read_head(head_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stitched = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=bundle, tokenizer=tokenizer)
    assert stitched.stitch_report.compatible


def test_same_size_permuted_vocabulary_is_never_compatible(head_folder, tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=head_folder, tokenizer=tokenizer)
    assert same.stitch_report.compatible and any("same token ids" in n for n in same.stitch_report.notes)
    permuted = permuted_tokenizer()
    assert len(permuted) == len(tokenizer)
    with pytest.warns(UserWarning, match=r"as many tokens .* maps the anchors to other token ids"):
        stitched = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=head_folder, tokenizer=permuted)
    report = stitched.stitch_report
    assert not report.compatible and report.warning and 0.0 <= report.score <= 1.0
    assert report.to_dict()["compatible"] is False
    assert stitched.config.head_source["stitch_report"]["compatible"] is False


def test_duplicate_and_zero_variance_anchors_are_warned(tokenizer, anchor_texts, tmp_path):
    texts = list(anchor_texts)
    texts[1] = texts[0]
    with pytest.warns(UserWarning, match=r"1 of the \d+ anchors are duplicates"):  # where they are chosen, once
        model = BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=texts, tokenizer=tokenizer, num_labels=3
        )
    folder = model.save_head(tmp_path / "dup")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*duplicates")  # not again on every attach
        BridgeForSequenceClassification.from_encoder(make_encoder(0), head=folder, tokenizer=tokenizer)
    flat = make_encoder(1)
    with torch.no_grad():  # an encoder whose output ignores the input: every anchor embeds the same
        for layer in flat.encoder.layer:
            layer.output.dense.weight.zero_()
            layer.output.dense.bias.zero_()
        flat.embeddings.word_embeddings.weight.zero_()
        flat.embeddings.position_embeddings.weight.zero_()
    with pytest.warns(UserWarning, match=r"\(almost\) identically \(degenerate anchors, zero variance\)"):
        BridgeForSequenceClassification.from_encoder(flat, head=folder, tokenizer=tokenizer, stitch_threshold=0.0)
