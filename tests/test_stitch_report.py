"""stitch_report: per-projection CKA parts, the score, the warning, and the ranking on real encoders."""

from __future__ import annotations

import warnings

import pytest
import torch

from hf_bridges.heads.compatibility import ALIGNED_THRESHOLD, DEFAULT_THRESHOLD, compute_stitch_report
from hf_bridges.offline.assets import is_placed

PROJECTIONS = ["cosine", "euclidean", "l1", "linf"]
L6, L3 = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"


def anisotropic(n=96, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.2, 3.0, d)


def test_same_space_scores_one():
    x = anisotropic()
    report = compute_stitch_report(x, x.clone(), PROJECTIONS)
    assert report.score == pytest.approx(1.0) and report.compatible and report.warning is None
    assert all(v == pytest.approx(1.0) for v in report.per_projection.values())
    assert report.suggested_subspace_weights == [1.0] * 4


def test_parts_follow_the_invariances():
    """A rotation + translation keeps euclidean distances (CKA 1) but not l1/linf ones."""
    x = anisotropic()
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(1)))
    moved = x @ q + 5.0
    report = compute_stitch_report(x, moved, PROJECTIONS, warn=False)
    parts = report.per_projection
    assert parts["euclidean"] == pytest.approx(1.0, abs=1e-9)
    assert parts["l1"] < 0.99 and parts["linf"] < 0.99
    assert report.suggested_subspace_weights[PROJECTIONS.index("euclidean")] == 1.0
    assert report.suggested_subspace_weights[PROJECTIONS.index("linf")] == 0.0
    centred = compute_stitch_report(x, moved, ["cosine"], abs_transform="centering", warn=False)
    assert centred.per_projection["cosine"] == pytest.approx(1.0, abs=1e-9)  # centring adds translation invariance
    # the score is the weighted mean of the parts in use
    chosen = compute_stitch_report(
        x, moved, PROJECTIONS, subspace_weights=report.suggested_subspace_weights, warn=False
    )
    assert chosen.score > report.score and 0.0 <= report.score <= 1.0


def test_unrelated_space_warns_in_plain_language():
    with pytest.warns(UserWarning, match="looks unlike the one this head was trained on"):
        report = compute_stitch_report(
            anisotropic(seed=0), anisotropic(seed=5), PROJECTIONS, training_encoder="enc-A", new_encoder="enc-B"
        )
    assert not report.compatible and report.score < DEFAULT_THRESHOLD
    assert "enc-B" in report.warning and "retrain" in report.warning
    assert "NOT compatible" in str(report) and report.to_dict()["warning"] == report.warning
    with pytest.raises(ValueError, match="same anchors"):
        compute_stitch_report(anisotropic(n=10), anisotropic(n=12), PROJECTIONS)


@pytest.mark.slow
@pytest.mark.skipif(
    not (is_placed(L6) and is_placed(L3)),
    reason="real MiniLM encoders not in the HF cache: run `hf-bridges offline-seed` (scripts/install.sh does)",
)
def test_ranks_real_encoders_like_stitched_accuracy(tmp_path):
    """L6 head -> L6 (same), L3 (compatible: ~0.81-0.86 stitched accuracy measured) and a random BERT (incompatible)."""
    from transformers import AutoModel, AutoTokenizer, BertModel

    from hf_bridges import BridgeForSequenceClassification
    from hf_bridges.data import load_labelled_dataset

    # 256 anchors: with far fewer than the width (384), two random spaces share neighbours by chance
    anchors = load_labelled_dataset("bbc_news")["train"].shuffle(seed=0).select(range(256))
    model = BridgeForSequenceClassification.from_encoder(
        L6, anchors=anchors["text"], anchor_labels=anchors["label"], num_labels=5, max_seq_length=64
    )
    folder = model.save_head(tmp_path / "head")
    torch.manual_seed(0)
    random_bert = BertModel(AutoModel.from_pretrained(L6).config).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = BridgeForSequenceClassification.from_encoder(L6, head=folder).stitch_report
        l3 = BridgeForSequenceClassification.from_encoder(L3, head=folder).stitch_report
        rand = BridgeForSequenceClassification.from_encoder(
            random_bert, head=folder, tokenizer=AutoTokenizer.from_pretrained(L6)
        ).stitch_report
    assert same.score == pytest.approx(1.0, abs=1e-3)
    assert same.score > l3.score > ALIGNED_THRESHOLD > rand.score  # the default head: the aligned score and gate
    assert l3.compatible and not rand.compatible and "looks unrelated" in rand.warning
    assert l3.training_encoder == L6 and l3.new_encoder == L3
