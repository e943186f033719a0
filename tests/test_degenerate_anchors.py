"""10 identical anchors (issue 11, probe 8): the first landing built a bridge whose logits do not depend on the input,
without a word. ``from_encoder(anchors=...)`` and attaching a head with such anchors now warn."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import make_encoder

from hf_bridges import BridgeForSequenceClassification

IDENTICAL = ["market film vote goal"] * 10


def test_from_encoder_warns_on_identical_anchors(tokenizer):
    with pytest.warns(UserWarning) as caught:
        BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=IDENTICAL, tokenizer=tokenizer, num_labels=3
        )
    messages = [str(w.message) for w in caught]
    assert any("9 of the 10 anchors are duplicates" in m and "'market film vote goal'" in m for m in messages)
    assert any("degenerate anchors, zero variance" in m for m in messages)
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line


def test_from_encoder_warns_on_an_encoder_that_ignores_its_input(tokenizer, anchor_texts):
    flat = make_encoder(1)
    with torch.no_grad():  # the output no longer depends on the tokens: distinct anchors, one embedding
        for layer in flat.encoder.layer:
            layer.output.dense.weight.zero_()
            layer.output.dense.bias.zero_()
        flat.embeddings.word_embeddings.weight.zero_()
        flat.embeddings.position_embeddings.weight.zero_()
    with pytest.warns(UserWarning, match="zero variance") as caught:
        BridgeForSequenceClassification.from_encoder(flat, anchors=anchor_texts, tokenizer=tokenizer, num_labels=3)
    assert not any("duplicates" in str(w.message) for w in caught)


def test_distinct_anchors_are_not_warned(tokenizer, anchor_texts):
    assert len(set(anchor_texts)) == len(anchor_texts)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(duplicates|zero variance)")
        BridgeForSequenceClassification.from_encoder(make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer)


def test_attach_warns_once_naming_the_head(tokenizer, tmp_path):
    with pytest.warns(UserWarning):
        model = BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=IDENTICAL, tokenizer=tokenizer, num_labels=3
        )
    folder = model.save_head(tmp_path / "identical")
    with pytest.warns(UserWarning) as caught:
        BridgeForSequenceClassification.from_encoder(
            make_encoder(1), head=folder, tokenizer=tokenizer, stitch_threshold=0.0
        )
    messages = [str(w.message) for w in caught]
    duplicates = [m for m in messages if "duplicates" in m]
    flat = [m for m in messages if "zero variance" in m]
    assert not duplicates  # the head's duplicates were said once, when it was built; the encoder's flatness is new
    assert len(flat) == 1 and str(folder) in flat[0]
