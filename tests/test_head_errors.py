"""Clear errors for every way a head can be unusable: wrong folder, missing/corrupted files, newer format, wrong
modality, an encoder without a loadable tokenizer, anchors that fail to embed."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_encoder
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.format import (
    ANCHOR_SPACE_NAME,
    ANCHORS_NAME,
    CONFIG_NAME,
    HEAD_FORMAT_VERSION,
    WEIGHTS_NAME,
    HeadFormatError,
    read_head,
)
from hf_bridges.heads.hub import HeadAttachError, load_head


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, tokenizer, anchor_texts):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    return model.save_head(tmp_path_factory.mktemp("heads") / "head")


@pytest.fixture
def head_copy(head_dir, tmp_path):
    import shutil

    return shutil.copytree(head_dir, tmp_path / "copy")


def test_a_folder_that_is_not_a_head(tmp_path, tokenizer, anchor_texts):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        HeadFormatError, match=r"not a bridge head: it has no bridge_head_config.json \(files: \['notes.txt'\]"
    ):
        read_head(tmp_path)
    full = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    full.save_pretrained(tmp_path / "full")
    with pytest.raises(HeadFormatError, match="full bridge model, not a head.*save_head"):
        load_head(tmp_path / "full")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / CONFIG_NAME).write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(HeadFormatError, match="not an hf_bridges head config"):
        read_head(tmp_path / "other")


@pytest.mark.parametrize("name", [WEIGHTS_NAME, ANCHORS_NAME, ANCHOR_SPACE_NAME])
def test_missing_file(head_copy, name):
    (head_copy / name).unlink()
    with pytest.raises(HeadFormatError, match=f"missing {name}: the head is incomplete"):
        read_head(head_copy)


@pytest.mark.parametrize("name", [WEIGHTS_NAME, ANCHORS_NAME, ANCHOR_SPACE_NAME])
def test_corrupted_file(head_copy, name):
    data = bytearray((head_copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (head_copy / name).write_bytes(bytes(data))
    with pytest.raises(HeadFormatError, match=f"{name} is corrupted"):
        read_head(head_copy)


def test_a_file_replaced_while_the_head_is_read_is_never_loaded(head_copy, monkeypatch):
    """The bytes that are loaded are the bytes whose checksum was verified: a weights file swapped for another
    valid one of the same size during the read (here: right after the header check) is an error, not a silent
    load of unverified weights (it was: the file was hashed, then opened again by path)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import hf_bridges.heads.format as head_format

    original = load_file(str(head_copy / WEIGHTS_NAME))
    with safe_open(str(head_copy / WEIGHTS_NAME), framework="pt") as handle:
        metadata = handle.metadata()
    swapped = head_copy.parent / "swapped.safetensors"
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in original.items()}, str(swapped), metadata)
    assert swapped.stat().st_size == (head_copy / WEIGHTS_NAME).stat().st_size
    checked = head_format.check_weights_header

    def check_then_swap(path, config, where):
        checked(path, config, where)
        swapped.replace(head_copy / WEIGHTS_NAME)

    monkeypatch.setattr(head_format, "check_weights_header", check_then_swap)
    try:
        head = read_head(head_copy)
    except HeadFormatError as error:
        assert f"{WEIGHTS_NAME} is corrupted" in str(error)
    else:
        for key, tensor in original.items():
            assert torch.equal(head.state_dict[key], tensor.float() if tensor.is_floating_point() else tensor), key


def test_unreadable_file_with_matching_checksum(head_copy):
    """A file broken before its checksum was written (or checks skipped) still fails with a clear message."""
    (head_copy / WEIGHTS_NAME).write_bytes(b"not safetensors at all")
    with pytest.raises(HeadFormatError, match="corrupted file"):
        read_head(head_copy, verify=False)


def test_corrupted_config(head_copy):
    (head_copy / CONFIG_NAME).write_text("{ truncated")
    with pytest.raises(HeadFormatError, match="corrupted \\(not valid JSON"):
        read_head(head_copy)


def test_newer_format_version(head_copy):
    config = json.loads((head_copy / CONFIG_NAME).read_text())
    config["bridge_head_format_version"] = HEAD_FORMAT_VERSION + 1
    (head_copy / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(
        HeadFormatError, match=f"format version {HEAD_FORMAT_VERSION + 1}, newer.*pip install -U hf_bridges"
    ):
        read_head(head_copy)


def test_modality_mismatch(head_dir):
    vit = ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
    )
    with pytest.raises(HeadAttachError, match="is a text head but .* is an image encoder .*pixel_values"):
        BridgeForSequenceClassification.from_encoder(vit, head=head_dir)


def test_encoder_without_a_loadable_tokenizer(head_dir, tmp_path):
    make_encoder(0).save_pretrained(tmp_path / "no-tokenizer")  # weights and config, no tokenizer files
    # transformers falls back to an empty BertTokenizer here: every word becomes [UNK]
    with pytest.raises(
        HeadAttachError, match="cannot attach .* maps .* anchor tokens to the unknown token.*tokenizer="
    ):
        BridgeForSequenceClassification.from_encoder(str(tmp_path / "no-tokenizer"), head=head_dir)
    make_encoder(0).save_pretrained(tmp_path / "bad-tokenizer")
    (tmp_path / "bad-tokenizer" / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "NoSuchTokenizer"})
    )
    with pytest.raises(HeadAttachError, match="(?s)cannot attach .* could not load a tokenizer .*tokenizer="):
        BridgeForSequenceClassification.from_encoder(str(tmp_path / "bad-tokenizer"), head=head_dir)
    (tmp_path / "no-config").mkdir()  # nothing AutoTokenizer can use at all
    with pytest.raises(OSError, match="could not load the encoder"):
        BridgeForSequenceClassification.from_encoder(str(tmp_path / "no-config"), head=head_dir)


def test_anchors_that_fail_to_embed(head_dir, tokenizer):
    small_vocab = BertModel(
        BertConfig(vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    )
    with pytest.raises(HeadAttachError, match="anchors of .* failed to embed .*IndexError.*same vocabulary"):
        BridgeForSequenceClassification.from_encoder(small_vocab, head=head_dir, tokenizer=tokenizer)
    broken = make_encoder(1)
    with torch.no_grad():
        broken.embeddings.word_embeddings.weight.fill_(float("nan"))
    with pytest.raises(HeadAttachError, match="failed to embed .*NaN"):
        BridgeForSequenceClassification.from_encoder(broken, head=head_dir, tokenizer=tokenizer)


def test_loading_never_unpickles(head_dir, monkeypatch):
    """Reading a head goes through JSON, safetensors and Parquet only."""
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a head load tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert read_head(head_dir).config["num_anchors"] > 0
