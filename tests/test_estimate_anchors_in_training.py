"""How a head was trained picks the expected accuracy's constants: ``anchors_in_training`` in the head config
(True: it trained on its anchors and alignment set, as the quickstart's head does; False: they are new to it;
absent: unknown), written by ``save_head(anchors_in_training=...)`` (hf_bridges.heads.estimate.CONSTANTS)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import make_encoder

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.cli import main
from hf_bridges.heads.estimate import CONSTANTS, AccuracyEstimate, estimate_for_attach, stored_anchors_in_training
from hf_bridges.heads.files import CONFIG_NAME, HeadFormatError
from hf_bridges.heads.format import read_head
from hf_bridges.modeling.registry import ConfigError

L6, L3 = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"


def _attach(folder, tokenizer) -> BridgeForSequenceClassification:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BridgeForSequenceClassification.from_encoder(make_encoder(1), head=folder, tokenizer=tokenizer)


def test_save_head_records_how_the_head_was_trained_and_the_estimate_uses_it(
    tmp_path, tokenizer, anchor_texts, capsys, one_thread
):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    expected = {}
    for flag in (True, False, None):
        folder = model.save_head(tmp_path / str(flag), metrics={"accuracy": 0.9}, anchors_in_training=flag)
        config = json.loads((folder / CONFIG_NAME).read_text())
        assert config.get("anchors_in_training", "absent") == ("absent" if flag is None else flag)
        estimate = AccuracyEstimate(**_attach(folder, tokenizer).stitch_report.estimate)
        assert estimate.anchors_in_training is flag and estimate.low <= estimate.expected <= estimate.high
        expected[flag] = estimate.expected
        assert main(["head", "inspect", str(folder)]) == 0
        said = {True: "among the head's training rows", False: "new to the head", None: "not recorded"}[flag]
        assert f"anchors:      {said}" in capsys.readouterr().out
    # same head, same new encoder, same evidence: only the constants differ (unless nothing changed at all)
    if expected[False] != pytest.approx(0.9):
        assert len({round(v, 6) for v in expected.values()}) == 3, expected
    with pytest.raises(ConfigError, match="anchors_in_training"):
        model.save_head(tmp_path / "bad", anchors_in_training="yes")


def test_an_edited_value_is_a_head_format_error_and_an_absent_one_is_unknown(
    tmp_path, tokenizer, anchor_texts, one_thread
):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    folder = model.save_head(tmp_path / "head", metrics={"accuracy": 0.9})  # as every earlier release wrote it
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert "anchors_in_training" not in config and stored_anchors_in_training(config) is None
    assert read_head(folder).config == config  # loads unchanged
    for bad in ("yes", 1, 0.5, [True]):
        with pytest.raises(HeadFormatError, match="field 'anchors_in_training' must be true, false or null"):
            stored_anchors_in_training({"anchors_in_training": bad}, "edited-head")
    (folder / CONFIG_NAME).write_text(json.dumps(dict(config, anchors_in_training="yes")))
    with pytest.raises(HeadFormatError, match="anchors_in_training"):
        _attach(folder, tokenizer)


@pytest.mark.slow
def test_a_head_trained_on_its_anchors_gets_its_measured_accuracy_on_a_real_pair(tmp_path, one_thread):
    """The quickstart's way on Rotten Tomatoes: a default head on MiniLM-L6 trained on rows that include its
    anchors and alignment set, saved with its accuracy and ``anchors_in_training=True``, attached to MiniLM-L3.
    The estimate is within 1.5 points of the stitched accuracy measured on 1,600 held-out snippets; the constants
    fitted on heads whose anchors are new to them read the same evidence more than 1.5 points low (on its own
    training rows the head is confident and right, so every change the new encoder makes there reads as a loss)."""
    from hf_bridges.data import load_labelled_dataset

    data = load_labelled_dataset("rotten_tomatoes")  # 2,100 train / 900 test snippets
    pool = data["train"].shuffle(seed=0)
    texts, labels = list(pool["text"]), list(pool["label"])
    rows = 1400  # the head's training rows: the anchors (256) and alignment set (256) are the first of them
    held_texts = texts[rows:] + list(data["test"]["text"])
    held_labels = torch.tensor(labels[rows:] + list(data["test"]["label"]))  # read only to measure
    torch.manual_seed(0)
    model = BridgeForSequenceClassification.from_encoder(
        L6,
        anchors=texts[:256],
        alignment_inputs=texts[256:512],
        num_labels=2,
        max_seq_length=64,
        embed_anchors=False,
    )
    features = model.encode(texts[:rows], batch_size=64, convert_to_tensor=True)
    model.set_anchor_embeddings(features[:512])
    y = torch.tensor(labels[:rows])
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    model.train()
    for epoch in range(10):
        for idx in torch.randperm(rows, generator=torch.Generator().manual_seed(epoch)).split(64):
            model(features=features[idx], labels=y[idx]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()

    def accuracy(bridge) -> float:
        with torch.no_grad():
            logits = bridge(features=bridge.encode(held_texts, batch_size=64, convert_to_tensor=True)).logits
        return float((logits.argmax(-1) == held_labels).float().mean())

    folder = model.save_head(tmp_path / "head", metrics={"accuracy": accuracy(model)}, anchors_in_training=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stitched = BridgeForSequenceClassification.from_encoder(L3, head=folder, max_seq_length=64)
    estimate = AccuracyEstimate(**stitched.stitch_report.estimate)
    measured = accuracy(stitched)
    assert estimate.anchors_in_training is True
    assert abs(estimate.expected - measured) <= 0.015, (estimate, measured)
    assert estimate.low <= measured <= estimate.high
    bundle = read_head(folder)
    bundle.config["anchors_in_training"] = None  # a head that does not say: constants fitted on both kinds
    assert abs(estimate_for_attach(stitched, bundle).expected - measured) <= 0.015
    bundle.config["anchors_in_training"] = False  # as if its anchors were new to it: the constants of the last release
    assert CONSTANTS[False].confidence_gap == 0.0
    assert estimate_for_attach(stitched, bundle).expected < measured - 0.015
