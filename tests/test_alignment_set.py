"""The alignment set: inputs stored and embedded like anchors that only add pairs to the aligned map's fit.

Synthetic: with fewer relative anchors than dimensions the anchors alone cannot pin down an affine map, and the
same head with an alignment set recovers it. Tiny text encoders: ``from_encoder(alignment_inputs=...)`` builds,
saves, attaches and reloads such a head."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_encoder, topic_texts

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.cli import main
from hf_bridges.heads.compatibility import align_head
from hf_bridges.heads.files import CONFIG_NAME, HEAD_FORMAT_VERSION
from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead
from hf_bridges.modeling.registry import ConfigError

D, CLASSES, RELATIVE, EXTRA = 24, 4, 16, 240  # 16 relative anchors < 24 dimensions


def _data(n: int = 1200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(CLASSES, D, generator=g, dtype=torch.float64) * 1.2
    y = torch.arange(n) % CLASSES
    x = means[y] + torch.randn(n, D, generator=g, dtype=torch.float64) * (torch.rand(D, generator=g) * 2 + 0.3) + 5
    g = torch.Generator().manual_seed(7)
    full = (torch.randn(D, D, generator=g, dtype=torch.float64) + 2 * torch.eye(D)) * torch.logspace(-1, 1, D)
    return x, y, lambda z: z @ full + 3.0


def _train(config: HeadConfig, x, y, anchors) -> RelativeProductHead:
    torch.manual_seed(0)
    head = RelativeProductHead(config, len(anchors), CLASSES, embedding_dim=D)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    head.train()
    for _ in range(20):
        for i in range(0, len(x), 128):
            loss = torch.nn.functional.cross_entropy(head(x[i : i + 128].float(), anchors.float()), y[i : i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def _kept(head, x, anchors, affine) -> tuple[float, dict]:
    reference = head(x.float(), anchors.float()).argmax(-1)
    weights, info = align_head(head, anchors.float(), affine(anchors).float())
    mapped = head(affine(x).float(), affine(anchors).float(), torch.tensor(weights)).argmax(-1)
    return float((mapped == reference).float().mean()), info


def test_an_alignment_set_recovers_a_map_the_anchors_alone_cannot():
    x, y, affine = _data()
    anchors, extra = x[:RELATIVE], x[RELATIVE : RELATIVE + EXTRA]
    plain = _train(HeadConfig(), x, y, anchors)
    with_set = _train(HeadConfig(relative_anchors=RELATIVE), x, y, torch.cat([anchors, extra]))
    assert with_set.relative_anchors == RELATIVE and with_set.norms[0].normalized_shape == (RELATIVE,)
    kept_plain, _ = _kept(plain, x, anchors, affine)
    kept_set, info = _kept(with_set, x, torch.cat([anchors, extra]), affine)
    assert kept_set >= 0.97 and info["fit"] >= 0.95, (kept_set, info)
    assert kept_set > kept_plain + 0.02, (kept_set, kept_plain)
    # the translated relative space keeps the relative anchors only
    assert info["relative_space"] == "translated" and with_set.aligned_anchors.shape == (RELATIVE, D)


def test_a_head_with_an_alignment_set_refuses_another_anchor_count():
    head = RelativeProductHead(HeadConfig(relative_anchors=4), 10, CLASSES, embedding_dim=D)
    with pytest.raises(ValueError, match=r"reads 10 anchors \(4 relative \+ 6 for the aligned map\), got 4"):
        head(torch.randn(3, D), torch.randn(4, D))
    with pytest.raises(ConfigError, match="relative_anchors.*aligned is false"):
        HeadConfig(aligned=False, relative_anchors=4)
    with pytest.raises(ValueError, match=r"relative_anchors must be in \[2, num_anchors=10\]"):
        RelativeProductHead(HeadConfig(relative_anchors=11), 10, CLASSES, embedding_dim=D)


def test_from_encoder_alignment_inputs_save_attach_and_reload(tmp_path, tokenizer, anchor_texts, one_thread, capsys):
    extra, _ = topic_texts(6, seed=11)
    a = make_encoder(seed=0, hidden_size=32)
    bridge = BridgeForSequenceClassification.from_encoder(
        a, anchors=anchor_texts, alignment_inputs=extra, tokenizer=tokenizer, num_labels=3
    )
    assert bridge.config.num_anchors == len(anchor_texts) + len(extra)
    assert bridge.config.head.relative_anchors == len(anchor_texts)
    assert bridge.anchor_embeddings.shape == (len(anchor_texts) + len(extra), 32)
    bridge.save_head(tmp_path / "head")
    written = json.loads((tmp_path / "head" / CONFIG_NAME).read_text())
    assert written["bridge_head_format_version"] == HEAD_FORMAT_VERSION == 3
    assert written["relative_anchors"] == len(anchor_texts) and written["num_anchors"] == len(bridge.config.anchors)
    card = (tmp_path / "head" / "README.md").read_text()
    assert f"{len(anchor_texts)} fixed anchor inputs (plus an alignment set of {len(extra)} inputs" in card
    assert main(["head", "inspect", str(tmp_path / "head")]) == 0
    assert f"{len(anchor_texts)} relative + an alignment set of {len(extra)}" in capsys.readouterr().out
    b = make_encoder(seed=1, hidden_size=48)
    stitched = BridgeForSequenceClassification.from_encoder(b, head=tmp_path / "head", tokenizer=tokenizer)
    assert stitched.config.head.relative_anchors == len(anchor_texts)
    assert f"{len(anchor_texts)} anchors + {len(extra)} alignment inputs" in str(stitched.stitch_report)
    inputs = stitched.tokenize(topic_texts(1, seed=5)[0])
    with torch.no_grad():
        logits = stitched(**inputs).logits
    stitched.save_pretrained(tmp_path / "stitched")
    reloaded = BridgeForSequenceClassification.from_pretrained(tmp_path / "stitched").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, logits, atol=1e-5)


def test_alignment_inputs_need_an_aligned_head(tokenizer, anchor_texts):
    a = make_encoder(seed=0, hidden_size=32)
    with pytest.raises(ConfigError, match="relative_anchors.*aligned is false"):
        BridgeForSequenceClassification.from_encoder(
            a,
            anchors=anchor_texts,
            alignment_inputs=["more text"],
            tokenizer=tokenizer,
            num_labels=3,
            head_config=HeadConfig(aligned=False),
        )
    with pytest.raises(ValueError, match="alignment_inputs is empty"):
        BridgeForSequenceClassification.from_encoder(
            a, anchors=anchor_texts, alignment_inputs=[], tokenizer=tokenizer, num_labels=3
        )


def test_an_attach_refuses_alignment_inputs(tmp_path, tokenizer, anchor_texts):
    a = make_encoder(seed=0, hidden_size=32)
    BridgeForSequenceClassification.from_encoder(a, anchors=anchor_texts, tokenizer=tokenizer, num_labels=3).save_head(
        tmp_path / "head"
    )
    with pytest.raises(ValueError, match="a trained head brings its anchors"):
        BridgeForSequenceClassification.from_encoder(
            a, head=tmp_path / "head", alignment_inputs=["x"], tokenizer=tokenizer
        )
