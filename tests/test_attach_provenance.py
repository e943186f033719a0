"""What an attach records: the head's training prefix (item: prefix in attach) and where the head came from
(``config.head_source``: repo id, commit, stitch report), saved with the stitched model and shown by its card."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import make_encoder
from hub_server import TOKEN, hub_fixture

from hf_bridges import BridgeConfig, BridgeForSequenceClassification
from hf_bridges.heads.cards import model_card
from hf_bridges.heads.format import CARD_NAME, CONFIG_NAME

hub = pytest.fixture(hub_fixture)


def train_head(tokenizer, anchor_texts, **kwargs):
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=3, **kwargs
    ).eval()


def test_head_trained_with_a_prefix_attached_with_another(tokenizer, anchor_texts, tmp_path):
    folder = train_head(tokenizer, anchor_texts, prefix="passage: ").save_head(tmp_path / "head")
    assert json.loads((folder / CONFIG_NAME).read_text())["input_prefix"] == "passage: "
    assert "Input prefix in training: `passage: `" in (folder / CARD_NAME).read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a given prefix: no prefix warning (and no TypeError from from_encoder)
        stitched = BridgeForSequenceClassification.from_encoder(
            make_encoder(1), head=folder, tokenizer=tokenizer, prefix="query: ", stitch_threshold=0.0
        )
    assert stitched.config.input_prefix == "query: "
    fresh = BridgeForSequenceClassification.from_encoder(
        make_encoder(1), anchors=anchor_texts, tokenizer=tokenizer, prefix="query: "
    )
    torch.testing.assert_close(stitched.anchor_embeddings, fresh.anchor_embeddings)  # embedded with the NEW prefix
    assert stitched.config.head_source["training_prefix"] == "passage: "
    assert any("'passage: '" in note and "'query: '" in note for note in stitched.stitch_report.notes)
    with pytest.warns(UserWarning, match=r"trained with the input prefix 'passage: '.*no prefix was given"):
        unprefixed = BridgeForSequenceClassification.from_encoder(
            make_encoder(1), head=folder, tokenizer=tokenizer, stitch_threshold=0.0
        )
    assert unprefixed.config.input_prefix == ""


def test_head_without_prefix_attaches_silently(tokenizer, anchor_texts, tmp_path):
    folder = train_head(tokenizer, anchor_texts).save_head(tmp_path / "head")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stitched = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=folder, tokenizer=tokenizer)
    assert stitched.config.head_source == {
        "repo_id": None,
        "revision": None,
        "training_prefix": "",
        "stitch_report": stitched.stitch_report.to_dict(),
    }


def test_head_source_names_repo_and_commit_and_survives_save(hub, tokenizer, anchor_texts, tmp_path):
    info = train_head(tokenizer, anchor_texts).push_head_to_hub("alice/provenance-head", token=TOKEN)
    stitched = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), head="alice/provenance-head", tokenizer=tokenizer
    )
    source = stitched.config.head_source
    assert source["repo_id"] == "alice/provenance-head" and source["revision"] == info.oid
    assert source["stitch_report"]["score"] == pytest.approx(stitched.stitch_report.score)
    stitched.save_pretrained(tmp_path / "model")
    reloaded = BridgeConfig.from_pretrained(tmp_path / "model")
    assert reloaded.head_source == json.loads(json.dumps(source))
    card = str(model_card(BridgeForSequenceClassification(reloaded, encoder=make_encoder(0))))
    assert "alice/provenance-head" in card and info.oid in card
