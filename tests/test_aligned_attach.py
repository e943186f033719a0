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
