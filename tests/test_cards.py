"""Cards carry Hub-searchable metadata, name their own repo, and a stitched model names its head's source."""

from __future__ import annotations

import pytest
from conftest import make_encoder, topic_texts
from huggingface_hub import ModelCard

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.cards import encoder_tag, head_card, model_card, retarget_head_card
from hf_bridges.heads.format import read_head

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"


@pytest.fixture(scope="module")
def bridge(tokenizer):
    texts, labels = topic_texts(2, seed=3)
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(), anchors=texts, anchor_labels=labels, tokenizer=tokenizer, num_labels=5
    ).eval()


@pytest.fixture()
def head(bridge, tmp_path):
    head = read_head(bridge.save_head(tmp_path / "head"))
    head.config["encoder"]["name_or_path"] = MINILM
    return head


def test_head_card_metadata_is_searchable(head):
    rows = [
        {"encoder": L3, "stitch_score": 0.91, "accuracy": 0.88},
        {"encoder": MINILM, "stitch_score": 1.0, "accuracy": 0.95},
    ]
    card = head_card(head, repo_id="org/topics-head", dataset="bbc_news", stitching_results=rows)
    data = card.data
    assert data.library_name == "hf_bridges" and data.base_model == MINILM
    assert {"hf-bridges", "bridge-head", "relative-representations", "text"} <= set(data.tags)
    assert {encoder_tag(MINILM), encoder_tag(L3)} <= set(data.tags)
    assert data.hf_bridges["trained_on"] == MINILM and data.hf_bridges["measured_on"] == [MINILM, L3]
    assert {(r.metric_config, r.metric_value) for r in data.eval_results} == {(L3, 0.88), (MINILM, 0.95)}
    reparsed = ModelCard(str(card))  # the metadata survives the README round trip (model-index included)
    assert {r.metric_config for r in reparsed.data.eval_results} == {MINILM, L3}
    assert 'head="org/topics-head"' in card.text


def test_retargeted_card_names_its_own_repo(head):
    card = head_card(head)  # a folder saved without a repo id
    assert 'head="path/to/this-head"' in card.text
    pushed = retarget_head_card(card, "alice/my-head")
    assert 'head="alice/my-head"' in pushed.text and "path/to/this-head" not in pushed.text
    assert "hf-bridges head attach alice/my-head " in pushed.text
    assert pushed.data.hf_bridges["repo_id"] == "alice/my-head" and pushed.data.base_model == MINILM
    again = retarget_head_card(pushed, "bob/fork")  # a card made for one repo, pushed to another
    assert 'head="bob/fork"' in again.text and "alice/my-head" not in again.text


def test_stitched_model_card_records_head_repo_revision_and_report(bridge):
    report = {"training_encoder": MINILM, "new_encoder": L3, "score": 0.912, "threshold": 0.5}
    card = model_card(
        bridge, repo_id="alice/stitched", head_repo="org/topics-head", head_revision="abc123", stitch_report=report
    )
    assert {k: card.data.hf_bridges[k] for k in ("kind", "head_repo", "head_revision", "stitch_report")} == {
        "kind": "stitched-model",
        "head_repo": "org/topics-head",
        "head_revision": "abc123",
        "stitch_report": report,
    }
    assert "`org/topics-head`" in card.text and "revision `abc123`" in card.text and "0.912" in card.text
    bridge.config.head_source = {"repo_id": "org/h2", "revision": "r2"}  # the config field contract adds
    try:
        assert model_card(bridge).data.hf_bridges["head_repo"] == "org/h2"
    finally:
        del bridge.config.head_source
    assert "head_repo" not in model_card(bridge).data.hf_bridges  # an unstitched model: no head source


def test_a_head_records_the_encoder_commit_and_normalisation_it_was_trained_with(tmp_path):
    """all-MiniLM-L6-v2 normalises (a sentence-transformers Normalize module the bridge honours), but head cards said
    ``normalize_embeddings: false`` (read from a key the head config does not hold), and the head config's
    ``encoder.commit_hash`` was always null (transformers 5 configs have no ``_commit_hash``): `head inspect`
    printed "revision -"."""
    from huggingface_hub import try_to_load_from_cache

    commit = try_to_load_from_cache(MINILM, "config.json")
    if not isinstance(commit, str):
        pytest.skip(f"{MINILM} is not in the HF cache (hf-bridges offline-seed)")
    model = BridgeForSequenceClassification.from_encoder(MINILM, anchors=topic_texts(1, seed=4)[0], num_labels=2)
    assert model.config.normalize_embeddings is True
    folder = model.save_head(tmp_path / "head")
    encoder = read_head(folder).config["encoder"]
    snapshot = commit.split("/")[-2]
    assert encoder["commit_hash"] == snapshot and encoder["normalize_embeddings"] is True
    meta = ModelCard.load(folder / "README.md").data.to_dict()["hf_bridges"]["encoder"]
    assert meta["normalize_embeddings"] is True and meta["revision"] == snapshot
