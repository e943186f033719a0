"""The label-free expected accuracy of a head on a new encoder (hf_bridges.heads.estimate)."""

from __future__ import annotations

import inspect
import itertools
import json
import warnings

import pytest
import torch
from helpers import make_encoder

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.cli import main
from hf_bridges.heads.compatibility import align_head
from hf_bridges.heads.estimate import AccuracyEstimate, estimate_accuracy, estimate_for_attach, stored_accuracy
from hf_bridges.heads.files import CONFIG_NAME, HeadFormatError
from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead


def test_the_api_has_no_way_to_take_a_label():
    """Only embeddings of the two encoders, the head and its own source accuracy go in: no label parameter."""
    params = set(inspect.signature(estimate_accuracy).parameters)
    assert params == {
        "head",
        "reference_embeddings",
        "new_embeddings",
        "source_accuracy",
        "reference_alignment",
        "subspace_weights",
        "translation",
        "alpha",
        "folds",
        "seed",
        "anchors_in_training",  # how the head was trained (picks the constants), not a label
    }
    assert set(inspect.signature(estimate_for_attach).parameters) == {"bridge", "bundle"}


def _clustered(n_per_class: int, classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 1.2
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def _trained_head(x: torch.Tensor, y: torch.Tensor, anchors: torch.Tensor, steps: int) -> RelativeProductHead:
    """The default head (4 classes, 16 dims) trained full-batch with Adam, in eval mode."""
    head = RelativeProductHead(HeadConfig(), len(anchors), 4, embedding_dim=16)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    head.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(x, anchors), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head.eval()


def _copy(head: RelativeProductHead, num_anchors: int) -> RelativeProductHead:
    """A fresh head with ``head``'s weights, to attach to another encoder."""
    attached = RelativeProductHead(HeadConfig(), num_anchors, 4, embedding_dim=16)
    attached.load_state_dict(head.state_dict())
    return attached.eval()


def test_a_graded_degradation_lowers_the_estimate_monotonically(one_thread):
    """Gaussian noise of growing size on the new encoder's embeddings: the estimate (and the share of kept
    predictions) falls step by step, and stays at the source accuracy for the same encoder."""
    torch.manual_seed(0)
    anchors, _ = _clustered(24, 4, 16, seed=1)  # 96 anchors
    x, y = _clustered(60, 4, 16, seed=2)
    head = _trained_head(x, y, anchors, steps=60)
    results = []
    for sigma in (0.0, 1.0, 2.0, 4.0):
        noisy = anchors + sigma * torch.randn(anchors.shape, generator=torch.Generator().manual_seed(3))
        attached = _copy(head, len(anchors))
        weights, _ = align_head(attached, anchors, noisy)
        results.append(estimate_accuracy(attached, anchors, noisy, source_accuracy=0.95, subspace_weights=weights))
    expected = [r.expected for r in results]
    assert expected[0] == pytest.approx(0.95) and results[0].kept == 1.0
    assert all(a > b for a, b in itertools.pairwise(expected)), expected
    assert all(r.low <= r.expected <= r.high for r in results)


def test_the_stitch_report_and_head_inspect_print_the_expected_accuracy(
    tmp_path, tokenizer, anchor_texts, tiny_encoder_dir, capsys, one_thread
):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    folder = model.save_head(tmp_path / "head", metrics={"accuracy": 0.9, "macro_f1": 0.88})
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["validation_accuracy"] == 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stitched = BridgeForSequenceClassification.from_encoder(make_encoder(1), head=folder, tokenizer=tokenizer)
    report = stitched.stitch_report
    estimate = AccuracyEstimate(**report.estimate)
    assert estimate.source_accuracy == 0.9 and estimate.low <= estimate.expected <= estimate.high
    line = f"expected accuracy {estimate.expected:.2f} ({estimate.low:.2f}–{estimate.high:.2f}) on this encoder; 0.90"
    assert line in str(report) and "on the training encoder" in str(report)
    assert report.to_dict()["estimate"]["kept"] == estimate.kept
    if estimate.high < 0.85:  # the warning says what the estimate says
        assert report.warning and f"expected accuracy {estimate.expected:.2f}" in report.warning
    assert main(["head", "inspect", str(folder), "--encoder", tiny_encoder_dir]) == 0
    out = capsys.readouterr().out
    assert "validation:   accuracy 0.900 on the training encoder" in out
    assert f"on {tiny_encoder_dir}: expected accuracy" in out and "on the training encoder" in out


def test_a_head_without_a_stored_accuracy_reports_the_kept_share(tmp_path, tokenizer, anchor_texts, one_thread):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    folder = model.save_head(tmp_path / "head")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stitched = BridgeForSequenceClassification.from_encoder(make_encoder(1), head=folder, tokenizer=tokenizer)
    estimate = AccuracyEstimate(**stitched.stitch_report.estimate)
    assert estimate.expected is None and 0.0 <= estimate.kept <= 1.0
    assert "of the head's predictions on this encoder" in str(stitched.stitch_report)
    with pytest.raises(HeadFormatError, match="validation_accuracy"):
        stored_accuracy({"validation_accuracy": 1.5}, "edited-head")


@pytest.mark.slow
def test_the_estimate_covers_the_measured_accuracy_on_a_real_attach(tmp_path, one_thread):
    """A default head trained on MiniLM-L6 embeddings of BBC News, attached to MiniLM-L3: the interval holds the
    accuracy measured on held-out articles (labels read only to measure)."""
    from transformers import AutoTokenizer

    from hf_bridges.data import load_labelled_dataset

    l6, l3 = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"
    data = load_labelled_dataset("bbc_news")
    pool = data["train"].shuffle(seed=0)
    anchors, train, val = pool.select(range(160)), pool.select(range(160, 460)), pool.select(range(460, 610))
    test = data["test"].shuffle(seed=0).select(range(200))
    tokenizer = AutoTokenizer.from_pretrained(l6)
    model = BridgeForSequenceClassification.from_encoder(
        l6, anchors=anchors["text"], tokenizer=tokenizer, num_labels=5, max_seq_length=64
    )

    def embed(bridge, texts):
        with torch.no_grad():
            return torch.cat([bridge.embed(**bridge.tokenize(texts[i : i + 64])) for i in range(0, len(texts), 64)])

    x, y = embed(model, train["text"]), torch.tensor(train["label"])
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    model.train()
    for _ in range(30):
        for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(32):
            loss = torch.nn.functional.cross_entropy(model(features=x[idx]).logits, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        val_accuracy = float(
            (model(features=embed(model, val["text"])).logits.argmax(-1) == torch.tensor(val["label"])).float().mean()
        )
    folder = model.save_head(tmp_path / "head", metrics={"accuracy": val_accuracy})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stitched = BridgeForSequenceClassification.from_encoder(l3, head=folder, max_seq_length=64)
    estimate = AccuracyEstimate(**stitched.stitch_report.estimate)
    with torch.no_grad():
        logits = stitched(features=embed(stitched, test["text"])).logits
    measured = float((logits.argmax(-1) == torch.tensor(test["label"])).float().mean())
    assert estimate.low <= measured <= estimate.high, (estimate, measured)


def test_the_warning_says_what_the_estimate_says():
    from hf_bridges.heads.compatibility import StitchReport

    low = AccuracyEstimate(kept=0.7, kept_low=0.65, kept_high=0.75, points=512, source_accuracy=0.95)
    low.expected, low.low, low.high = 0.8, 0.74, 0.86
    report = StitchReport(0.5, {"cosine": 0.5}, [1.0, 1.0], {"cosine": 0.5}, [1.0], threshold=0.15)
    report.alignment, report.estimate = {"map": "affine", "residual": 0.1}, low.to_dict()
    assert report.compatible and "expected accuracy 0.80 (0.74–0.86) on this encoder; 0.95" in report.warning
    assert "expect to lose about 15%" in report.warning and "expected accuracy 0.80" in str(report)
    report.estimate = dict(low.to_dict(), expected=0.93, low=0.89, high=0.97)
    assert report.warning is None  # within 5 points of the head's own accuracy: no warning
    report.score = 0.1  # under the gate: the unrelated-encoder warning, with the estimate appended
    assert "looks unrelated" in report.warning and "Label-free estimate: expected accuracy 0.93" in report.warning


def test_a_cleaner_encoder_raises_the_estimate_a_noisier_one_lowers_it(one_thread):
    """A head trained on noisy embeddings moved to the clean ones gains accuracy, which no agreement sees (the
    calibrated agreement falls under the head's accuracy); the new side's calibrated confidence lifts the estimate
    over it. Moved to a noisier encoder, the estimate falls, close to the measured accuracy."""
    torch.manual_seed(0)

    def noisy(t, sigma, seed):
        return t + sigma * torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))

    anchors, _ = _clustered(40, 4, 16, seed=1)
    x, y = _clustered(100, 4, 16, seed=2)
    x_val, y_val = _clustered(100, 4, 16, seed=4)
    source_anchors, source_val = noisy(anchors, 2.5, 6), noisy(x_val, 2.5, 7)
    head = _trained_head(noisy(x, 2.5, 5), y, source_anchors, steps=80)
    with torch.no_grad():
        accuracy = float((head(source_val, source_anchors).argmax(-1) == y_val).double().mean())
    cases = {"cleaner": (anchors, x_val), "noisier": (noisy(source_anchors, 2.0, 8), noisy(source_val, 2.0, 9))}
    for name, (new_anchors, new_val) in cases.items():
        attached = _copy(head, len(anchors))
        weights, _ = align_head(attached, source_anchors, new_anchors)
        estimate = estimate_accuracy(
            attached, source_anchors, new_anchors, source_accuracy=accuracy, subspace_weights=weights
        )
        with torch.no_grad():
            logits = attached(new_val, new_anchors, torch.tensor(weights))
        measured = float((logits.argmax(-1) == y_val).double().mean())
        if name == "cleaner":
            assert measured > accuracy + 0.1 and estimate.signals["calibrated_agreement"] < accuracy
            assert estimate.expected > accuracy, (estimate.expected, accuracy, measured)
        else:
            assert measured < accuracy and estimate.expected < accuracy
            assert abs(estimate.expected - measured) < 0.03, (estimate.expected, measured)
