"""The default head end to end on tiny encoders: from_encoder builds it, a head attaches to another (wider) encoder
with a fitted translation, and the stitched model saves and reloads identically."""

from __future__ import annotations

import torch
from helpers import make_encoder, topic_texts

from hf_bridges import BridgeForSequenceClassification


def test_default_head_attaches_saves_and_reloads(tmp_path, tokenizer, anchor_texts, one_thread):
    a = make_encoder(seed=0, hidden_size=32)
    bridge = BridgeForSequenceClassification.from_encoder(a, anchors=anchor_texts, tokenizer=tokenizer, num_labels=4)
    assert bridge.config.head.aligned and bridge.config.head.aligned_dim == 32
    bridge.save_head(tmp_path / "head")
    b = make_encoder(seed=1, hidden_size=48)  # another width: the map is (48, 32)
    stitched = BridgeForSequenceClassification.from_encoder(b, head=tmp_path / "head", tokenizer=tokenizer)
    report = stitched.stitch_report
    assert report.alignment["map"] in ("orthogonal", "affine") and "residual" in report.alignment
    assert stitched.head.aligned_weight.shape == (48, 32)
    assert len(stitched.config.subspace_weights) == 2 and "aligned component" in str(report)
    texts, _ = topic_texts(2, seed=5)
    inputs = stitched.tokenize(texts)
    with torch.no_grad():
        logits = stitched(**inputs).logits
    stitched.save_pretrained(tmp_path / "stitched")
    reloaded = BridgeForSequenceClassification.from_pretrained(tmp_path / "stitched").eval()
    assert reloaded.config.subspace_weights == stitched.config.subspace_weights
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, logits, atol=1e-5)


def test_attach_records_the_rule_and_a_translated_head_reloads_identically(
    tmp_path, tokenizer, anchor_texts, one_thread
):
    a = make_encoder(seed=0, hidden_size=32)
    BridgeForSequenceClassification.from_encoder(a, anchors=anchor_texts, tokenizer=tokenizer, num_labels=3).save_head(
        tmp_path / "head"
    )
    b = make_encoder(seed=2, hidden_size=32)
    native = BridgeForSequenceClassification.from_encoder(b, head=tmp_path / "head", tokenizer=tokenizer)
    record = native.config.head.alignment
    assert record["map"] in ("orthogonal", "affine") and record["relative_space"] == "native"  # tiny random: fit < 0.9
    assert record["fit"] < 0.9 and record["stitch_score"] == native.stitch_report.score
    assert native.config.subspace_weights == [1.0, 1.0]  # no component gating by default
    assert "relative space: native" in str(native.stitch_report)
    forced = BridgeForSequenceClassification.from_encoder(
        b, head=tmp_path / "head", tokenizer=tokenizer, relative_space="translated"
    )
    assert forced.config.head.alignment["relative_space"] == "translated"
    assert forced.head.aligned_anchors.shape == (len(anchor_texts), 32)
    texts, _ = topic_texts(2, seed=3)
    inputs = forced.tokenize(texts)
    with torch.no_grad():
        logits = forced(**inputs).logits
        assert not torch.allclose(logits, native(**inputs).logits)  # the relative component reads another space
    forced.save_pretrained(tmp_path / "forced")
    reloaded = BridgeForSequenceClassification.from_pretrained(tmp_path / "forced").eval()
    assert reloaded.head.relative_space == "translated"
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, logits, atol=1e-5)
    # and its head moves on (the translated training anchors travel in the weights)
    again = BridgeForSequenceClassification.from_encoder(
        b, head=forced.save_head(tmp_path / "head2"), tokenizer=tokenizer
    )
    assert again.config.head.alignment["map"] == "identity"
    with torch.no_grad():
        assert torch.allclose(again(**inputs).logits, native(**inputs).logits, atol=1e-4)
