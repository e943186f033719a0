"""Head-only format: what save_head writes, attaching to the same / another encoder, size, atomic saves."""

from __future__ import annotations

import json
import warnings

import pyarrow.parquet as pq
import pytest
import torch
from helpers import make_encoder, make_tokenizer, topic_texts
from safetensors.torch import load_file

from hf_bridges import BridgeForSequenceClassification, BridgeModel
from hf_bridges.heads.format import (
    ANCHOR_SPACE_NAME,
    ANCHORS_NAME,
    CARD_NAME,
    CONFIG_NAME,
    PLAIN_HEAD_FORMAT,
    WEIGHTS_NAME,
    read_head,
)
from hf_bridges.heads.hub import HeadAttachError


def build(tokenizer, anchors, labels=None, seed=0, hidden=32, cls=BridgeForSequenceClassification, layers=2, **kwargs):
    kwargs.setdefault("num_labels", 5)
    if cls is BridgeModel:
        kwargs.pop("num_labels")
    model = cls.from_encoder(
        make_encoder(seed, hidden, layers), anchors=anchors, anchor_labels=labels, tokenizer=tokenizer, **kwargs
    )
    return model.eval()


@pytest.fixture
def texts():
    return topic_texts(3, seed=7)[0]


@pytest.fixture(scope="module")
def trained(tokenizer, anchor_texts):
    """A head with non-default weights (a few optimizer steps), so identical logits are not a coincidence."""
    _, labels = topic_texts(4, seed=123)
    model = build(tokenizer, anchor_texts, labels, id2label={i: f"topic{i}" for i in range(5)})
    texts, y = topic_texts(6, seed=1)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    model.train()
    for _ in range(5):
        optimizer.zero_grad()
        model(**batch, labels=torch.tensor(y)).loss.backward()
        optimizer.step()
    return model.eval()


def logits(model, tokenizer, texts):
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def test_save_head_writes_the_documented_files(trained, tmp_path, anchor_texts):
    folder = trained.save_head(
        tmp_path / "head",
        dataset="toy-topics",
        metrics={"accuracy": 0.9},
        stitching_results=[{"encoder": "org/other-encoder", "stitch_score": 0.81, "accuracy": 0.84}],
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [CONFIG_NAME, WEIGHTS_NAME, ANCHORS_NAME, ANCHOR_SPACE_NAME, CARD_NAME]
    )
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert (
        config["bridge_head_format_version"] == PLAIN_HEAD_FORMAT
        and "relative_anchors" not in config
        and config["library_name"] == "hf_bridges"
    )
    assert config["encoder"]["model_type"] == "bert" and config["encoder"]["hidden_size"] == 32
    # the default head (issue 9): one cosine subspace + the aligned component, one classifier each
    assert config["projections"] == ["cosine"] and config["aggregation"] == "concat"
    assert config["aligned"] is True and config["aligned_dim"] == 32 and config["combine"] == "sum"
    assert config["alignment"] is None  # nothing fitted on the training encoder
    assert config["id2label"] == {str(i): f"topic{i}" for i in range(5)} and config["num_anchors"] == len(anchor_texts)
    weights = load_file(folder / WEIGHTS_NAME)
    in_memory = {"classifier." + k[4:] if k.startswith("mlp.") else k for k in trained.head.state_dict()}  # MLP: `mlp`
    assert set(weights) == in_memory  # head only: no encoder weights, no anchor buffers
    table = pq.read_table(folder / ANCHORS_NAME)
    assert table.column("anchor").to_pylist() == anchor_texts
    assert load_file(folder / ANCHOR_SPACE_NAME)["anchor_embeddings"].shape == (len(anchor_texts), 32)
    card = (folder / CARD_NAME).read_text()
    assert "library_name: hf_bridges" in card and "toy-topics" in card and "from_encoder(" in card
    assert "| accuracy | 0.9000 |" in card and "| `org/other-encoder` | 0.810 | 0.840 |" in card


def test_attach_to_the_training_encoder_gives_identical_logits(trained, tokenizer, tmp_path, texts):
    folder = trained.save_head(tmp_path / "head")
    stitched = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=str(folder), tokenizer=tokenizer)
    assert torch.equal(logits(stitched, tokenizer, texts), logits(trained, tokenizer, texts))
    assert stitched.config.id2label == trained.config.id2label
    report = stitched.stitch_report
    assert report.score == pytest.approx(1.0, abs=1e-3) and report.compatible and report.warning is None


def test_attach_by_path_loads_the_encoders_own_tokenizer(trained, tiny_encoder_dir, tmp_path, tokenizer, texts):
    folder = trained.save_head(tmp_path / "head")
    stitched = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder)
    assert stitched.tokenizer is not None and stitched.config.encoder_name_or_path == tiny_encoder_dir
    assert torch.equal(logits(stitched, tokenizer, texts), logits(trained, tokenizer, texts))  # same seed-0 encoder


def test_attached_model_is_a_normal_model(trained, tokenizer, tmp_path, texts):
    folder = trained.save_head(tmp_path / "head")
    stitched = BridgeForSequenceClassification.from_encoder(
        make_encoder(3, hidden_size=48), head=folder, tokenizer=tokenizer
    )
    assert stitched.config.hidden_size == 48 and stitched.anchors.embeddings.shape == (trained.config.num_anchors, 48)
    before = logits(stitched, tokenizer, texts)
    # save_pretrained / from_pretrained round trip
    stitched.save_pretrained(tmp_path / "full")
    again = BridgeForSequenceClassification.from_pretrained(tmp_path / "full").eval()
    assert torch.allclose(logits(again, tokenizer, texts), before, atol=1e-6)
    # train further: a step changes the head and the loss is finite
    stitched.train()
    y = torch.arange(len(texts)) % 5
    loss = stitched(**tokenizer(texts, padding=True, return_tensors="pt"), labels=y).loss
    loss.backward()
    torch.optim.SGD(stitched.head.parameters(), lr=0.1).step()
    assert torch.isfinite(loss) and not torch.equal(logits(stitched.eval(), tokenizer, texts), before)
    # and its head moves again, now recording the new encoder
    head = read_head(stitched.save_head(tmp_path / "head2"))
    assert head.encoder["hidden_size"] == 48


def test_subspace_selection_auto_sets_config_weights(tokenizer, anchor_texts, tmp_path):
    from hf_bridges.modeling.configuration_bridge import DEFAULT_PROJECTIONS, HeadConfig

    # subspace selection is a relative-only head's attach option: pin that head (the pre-issue-9 default)
    relative = HeadConfig(
        projections=list(DEFAULT_PROJECTIONS),
        abs_transform="none",
        aggregation="mlp_sum",
        aligned=False,
        component_dropout=0.0,
    )
    folder = build(tokenizer, anchor_texts, head_config=relative).save_head(tmp_path / "head")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny random encoders may be far apart
        plain = BridgeForSequenceClassification.from_encoder(make_encoder(5), head=folder, tokenizer=tokenizer)
        chosen = BridgeForSequenceClassification.from_encoder(
            make_encoder(5), head=folder, tokenizer=tokenizer, subspace_selection="auto"
        )
    assert plain.config.subspace_weights is None
    suggested = plain.stitch_report.suggested_subspace_weights
    assert chosen.config.subspace_weights == suggested and sum(suggested) >= 1
    assert chosen.stitch_report.score >= plain.stitch_report.score
    with pytest.raises(ValueError, match="subspace_selection"):
        BridgeForSequenceClassification.from_encoder(
            make_encoder(0), head=folder, tokenizer=tokenizer, subspace_selection="best"
        )


def test_representation_heads_and_classifier_heads(trained, tokenizer, anchor_texts, tmp_path, texts):
    folder = trained.save_head(tmp_path / "head")
    rep = BridgeModel.from_encoder(make_encoder(0), head=folder, tokenizer=tokenizer)  # classifier dropped
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = trained(**batch, output_representations=True).relative_representation
        assert torch.equal(rep(**batch).relative_representation, expected)
    no_classifier = build(tokenizer, anchor_texts, cls=BridgeModel).save_head(tmp_path / "rep")
    with pytest.raises(HeadAttachError, match="no classifier"):
        BridgeForSequenceClassification.from_encoder(make_encoder(0), head=no_classifier, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="either anchors"):
        BridgeForSequenceClassification.from_encoder(make_encoder(0), anchors=anchor_texts, head=folder)


def test_float16_weights_are_close(trained, tokenizer, tmp_path, texts):
    folder = trained.save_head(tmp_path / "head16", weights_dtype="float16")
    assert (folder / WEIGHTS_NAME).stat().st_size < 0.6 * trained.save_head(tmp_path / "head32").joinpath(
        WEIGHTS_NAME
    ).stat().st_size
    stitched = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=folder, tokenizer=tokenizer)
    assert torch.allclose(logits(stitched, tokenizer, texts), logits(trained, tokenizer, texts), atol=1e-2)


@pytest.mark.parametrize("aggregation", ["mlp_sum", "self_attention", "concat"])
def test_1280_anchor_5_class_head_is_under_10_mb(tmp_path, aggregation):
    """The issue's size budget, with a 384-wide encoder (MiniLM's width); anchor texts excluded."""
    tokenizer = make_tokenizer()
    anchors = topic_texts(256, seed=3)[0]  # 1280 texts
    model = build(tokenizer, anchors, hidden=384, layers=1, aggregation=aggregation, anchor_batch_size=256)
    folder = model.save_head(tmp_path / "head")
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    total = sum(size for name, size in sizes.items() if name != ANCHORS_NAME)
    assert total < 10 * 2**20, sizes
    assert sizes[ANCHOR_SPACE_NAME] < 1.1 * 1280 * 384 * 2  # float16 anchor embeddings


def test_saving_over_an_old_head_is_atomic(trained, tokenizer, anchor_texts, tmp_path, monkeypatch):
    folder = trained.save_head(tmp_path / "head")
    old = read_head(folder).state_dict
    other = build(tokenizer, anchor_texts, seed=9)

    def broken(*args, **kwargs):
        raise KeyboardInterrupt("interrupted while writing anchors.parquet")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(KeyboardInterrupt):
        other.save_head(folder)
    monkeypatch.undo()
    kept = read_head(folder)  # checksums verified: no mix of old and new files
    assert all(torch.equal(kept.state_dict[k], old[k]) for k in old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head"]  # no staging folder left behind
    other.save_head(folder)  # a completed save replaces it
    folder.rename(tmp_path / ".head.old-123")  # as if killed between the swap's two renames
    with pytest.raises(ValueError, match="interrupted save left the previous head at .*head.old-123"):
        read_head(folder)
    (tmp_path / ".head.old-123").rename(folder)
    key = next(k for k in old if k.startswith("classifier."))
    assert not torch.equal(read_head(folder).state_dict[key], old[key])


def test_saving_into_a_shared_folder_keeps_other_files(trained, tmp_path):
    trained.save_pretrained(tmp_path / "repo")
    trained.save_head(tmp_path / "repo")
    names = {p.name for p in (tmp_path / "repo").iterdir()}
    assert {"config.json", "model.safetensors", CONFIG_NAME, WEIGHTS_NAME}.issubset(names)
    read_head(tmp_path / "repo")


def test_card_links_the_base_encoder_on_the_hub(trained, tmp_path):
    from hf_bridges.heads.cards import head_card

    head = read_head(trained.save_head(tmp_path / "head"))
    head.config["encoder"]["name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"
    card = head_card(head, repo_id="org/topics-head", dataset="bbc_news", metrics={"accuracy": 0.95})
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.library_name == "hf_bridges"
    assert card.data.datasets == ["bbc_news"] and card.data.metrics == ["accuracy"] and "bridge-head" in card.data.tags
    assert 'head="org/topics-head"' in card.text
