"""from_encoder(prefix=...) embeds the anchors and every input with the prefix and saves it; unknown keywords are
refused with a TypeError instead of landing in the config (issue 9.6)."""

from __future__ import annotations

import pytest
import torch

from hf_bridges import BridgeForSequenceClassification


def test_prefix_is_applied_to_anchors_and_inputs_and_saved(tiny_encoder_dir, anchor_texts, tmp_path):
    plain = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=3)
    model = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir, anchors=anchor_texts, num_labels=3, prefix="passage: "
    )
    assert model.config.input_prefix == "passage: " and plain.config.input_prefix == ""
    tok = model.tokenizer
    expected = tok(["passage: " + anchor_texts[0]], return_tensors="pt")["input_ids"][0]
    stored = model.anchors.input_ids[0][model.anchors.attention_mask[0].bool()]
    assert torch.equal(stored, expected)  # the anchors were tokenised with the prefix
    assert not torch.allclose(model.anchor_embeddings, plain.anchor_embeddings)
    batch = model.tokenize(["some text", "another"])
    assert torch.equal(
        batch["input_ids"],
        tok(
            ["passage: some text", "passage: another"],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )["input_ids"],
    )
    model.eval()
    model.save_pretrained(tmp_path / "m")
    again = BridgeForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert again.config.input_prefix == "passage: "
    assert torch.equal(again.tokenize("x")["input_ids"], model.tokenize("x")["input_ids"])
    with torch.no_grad():
        assert torch.allclose(again(**batch).logits, model(**batch).logits, atol=1e-6)


def test_unknown_keywords_raise_type_error_with_a_hint(tiny_encoder_dir, anchor_texts):
    with pytest.raises(TypeError, match=r"'prefx' \(did you mean 'prefix'\?\)"):
        BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, prefx="passage: ")
    with pytest.raises(TypeError, match=r"'num_label' \(did you mean 'num_labels'\?\)"):
        BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_label=3)
    with pytest.raises(TypeError, match="'input_prefix'"):  # spelt prefix= here
        BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, input_prefix="q: ")
    # real config fields still pass through
    model = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir, anchors=anchor_texts, num_labels=3, abs_transform="standard", classifier_dropout=0.0
    )
    assert model.config.head.abs_transform == "standard"


def test_head_config_argument(tiny_encoder_dir, anchor_texts):
    model = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir,
        anchors=anchor_texts,
        num_labels=3,
        head_config={"projections": ["cosine"], "aggregation": "sum", "classifier_hidden_size": 0},
    )
    head = model.head
    assert head.projection_names == ["cosine"] and type(head.aggregation).__name__ == "SumAggregation"
    # the fields not in the dict keep the default (aligned, combine "sum"): one classifier per component, each a
    # plain Linear because of classifier_hidden_size=0
    assert head.aligned and isinstance(head.classifier.relative, torch.nn.Linear)
    assert isinstance(head.classifier.aligned, torch.nn.Linear)
    single = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir,
        anchors=anchor_texts,
        num_labels=3,
        head_config={"aligned": False, "projections": ["cosine"], "classifier_hidden_size": 0},
    )
    assert not single.head.aligned and isinstance(single.head.classifier, torch.nn.Linear)


def test_attach_with_a_prefix_embeds_the_heads_anchors_with_the_new_prefix(tiny_encoder_dir, anchor_texts, tmp_path):
    model = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=3)
    model.save_head(tmp_path / "head")
    attached = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=tmp_path / "head", prefix="query: ")
    assert attached.config.input_prefix == "query: "
    expected = attached.tokenizer(["query: " + anchor_texts[0]], return_tensors="pt")["input_ids"][0]
    assert torch.equal(attached.anchors.input_ids[0][attached.anchors.attention_mask[0].bool()], expected)
    with pytest.raises(TypeError, match="did you mean 'subspace_selection'"):
        BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=tmp_path / "head", subspace_selecton="auto")
