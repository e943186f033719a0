"""sentence-transformers models in ``from_encoder`` and attach: a bridge embeds as ``SentenceTransformer.encode``
does (CLS pooling + Normalize + max_seq_length + a prompt by name), from a folder, a loaded object, a reload and a
head attached to it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import topic_texts
from test_st_config import PROMPTS, TEXTS, write_st_folder
from transformers import AutoModel, AutoTokenizer

from hf_bridges import BridgeModel

ANCHORS = topic_texts(2, seed=5)[0]  # words of the tiny tokenizer's vocabulary


def bridge_embeddings(bridge, texts) -> np.ndarray:
    bridge.eval()
    with torch.no_grad():
        return bridge.embed(**bridge.tokenize(texts)).numpy()


def assert_close(got, expected):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=0, atol=1e-5)


def test_bridge_of_a_hand_written_st_folder_matches_a_hand_computed_reference(tiny_encoder_dir, tmp_path, one_thread):
    """No sentence-transformers needed: CLS pooling, Normalize, max_seq_length 8 and the prompt "query" by name."""
    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, folder)
    write_st_folder(folder, {"word_embedding_dimension": 32, "pooling_mode_cls_token": True}, prompts=PROMPTS)
    bridge = BridgeModel.from_encoder(str(folder), anchors=ANCHORS, prefix="query")
    config = bridge.config
    assert (config.pooling, config.normalize_embeddings, config.max_seq_length, config.input_prefix) == (
        "cls",
        True,
        8,
        "film music ",
    )
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def by_hand(texts):
        ids = tok(["film music " + t for t in texts], truncation=True, max_length=8, padding=True, return_tensors="pt")
        with torch.no_grad():
            first = model(**ids).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(first, dim=-1).numpy()

    assert_close(bridge_embeddings(bridge, TEXTS), by_hand(TEXTS))
    assert_close(bridge.anchor_embeddings, by_hand(ANCHORS))
    plain = BridgeModel.from_encoder(tiny_encoder_dir, anchors=ANCHORS)  # a plain encoder: mean, 128, no norm
    assert (plain.config.pooling, plain.config.max_seq_length, plain.config.normalize_embeddings) == (
        "mean",
        64,  # 128, clamped to the tiny encoder's max_position_embeddings (issue 20)
        False,
    )
    explicit = BridgeModel.from_encoder(
        str(folder), anchors=ANCHORS, pooling="max", normalize_embeddings=False, max_seq_length=5, prefix="doc: "
    )
    assert (
        explicit.config.pooling,
        explicit.config.normalize_embeddings,
        explicit.config.max_seq_length,
        explicit.config.input_prefix,
    ) == ("max", False, 5, "doc: ")


def test_bridge_embeddings_equal_sentence_transformers_encode(tiny_encoder_dir, tmp_path, one_thread):
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

    model = st.SentenceTransformer(
        modules=[Transformer(tiny_encoder_dir, max_seq_length=6), Pooling(32, pooling_mode="cls"), Normalize()],
        prompts=PROMPTS,
        device="cpu",
    )
    folder = tmp_path / "st"
    model.save(str(folder))
    expected = model.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    expected_anchors = model.encode(ANCHORS, prompt_name="query", convert_to_numpy=True)
    assert not np.allclose(expected, model.encode(TEXTS, convert_to_numpy=True), atol=1e-3)  # the prompt matters

    from_folder = BridgeModel.from_encoder(str(folder), anchors=ANCHORS, prefix="query")
    from_object = BridgeModel.from_encoder(model, anchors=ANCHORS, prefix="query")
    for bridge in (from_folder, from_object):
        assert (bridge.config.pooling, bridge.config.normalize_embeddings, bridge.config.max_seq_length) == (
            "cls",
            True,
            6,
        )
        assert_close(bridge_embeddings(bridge, TEXTS), expected)
        assert_close(bridge.anchor_embeddings, expected_anchors)

    from_folder.save_pretrained(tmp_path / "saved")  # normalize_embeddings and the prompt survive a reload
    reloaded = BridgeModel.from_pretrained(tmp_path / "saved")
    assert_close(bridge_embeddings(reloaded, TEXTS), expected)

    # a head trained on the plain encoder (mean pooling, 32 tokens, no prompt), attached to the ST model: the new
    # encoder embeds the head's anchors its own way
    trained = BridgeModel.from_encoder(tiny_encoder_dir, anchors=ANCHORS, max_seq_length=32)
    trained.save_head(tmp_path / "head")
    for encoder in (str(folder), model):
        stitched = BridgeModel.from_encoder(encoder, head=str(tmp_path / "head"), prefix="query")
        assert (
            stitched.config.pooling,
            stitched.config.normalize_embeddings,
            stitched.config.max_seq_length,
            stitched.config.input_prefix,
        ) == ("cls", True, 6, "film music ")
        assert_close(stitched.anchor_embeddings, expected_anchors)
        assert_close(bridge_embeddings(stitched, TEXTS), expected)


def test_a_transformer_module_in_a_subfolder_loads_from_it(tiny_encoder_dir, tmp_path, one_thread):
    """Older sentence-transformers folders keep the weights and tokenizer in ``0_Transformer/``: from_encoder and
    attach load them from there, and embed as the hand-computed reference (CLS pooling + Normalize, 8 tokens)."""
    folder = tmp_path / "st-sub"
    shutil.copytree(tiny_encoder_dir, folder / "0_Transformer")
    write_st_folder(folder, {"word_embedding_dimension": 32, "pooling_mode_cls_token": True})
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").rename(folder / "0_Transformer" / "sentence_bert_config.json")
    assert not (folder / "config.json").exists()  # nothing at the root for transformers to load

    tok = AutoTokenizer.from_pretrained(folder / "0_Transformer")
    model = AutoModel.from_pretrained(folder / "0_Transformer").eval()

    def by_hand(texts):
        ids = tok(texts, truncation=True, max_length=8, padding=True, return_tensors="pt")
        with torch.no_grad():
            return torch.nn.functional.normalize(model(**ids).last_hidden_state[:, 0], dim=-1).numpy()

    bridge = BridgeModel.from_encoder(str(folder), anchors=ANCHORS)
    assert (bridge.config.pooling, bridge.config.max_seq_length) == ("cls", 8)
    assert_close(bridge.anchor_embeddings, by_hand(ANCHORS))
    assert_close(bridge_embeddings(bridge, TEXTS), by_hand(TEXTS))
    BridgeModel.from_encoder(tiny_encoder_dir, anchors=ANCHORS).save_head(tmp_path / "head")
    stitched = BridgeModel.from_encoder(str(folder), head=str(tmp_path / "head"))
    assert_close(stitched.anchor_embeddings, by_hand(ANCHORS))


def test_a_prompt_the_pooling_leaves_out_is_refused(tiny_encoder_dir, tmp_path):
    """include_prompt=false (instruction models): a bridge cannot pool without the prompt's tokens, so a prompt is
    an error that names the fix, in from_encoder and attach; without a prompt the model works."""
    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, folder)
    write_st_folder(
        folder,
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True, "include_prompt": False},
        prompts=PROMPTS,
    )
    with pytest.raises(ValueError, match="include_prompt=false.*prefix=''"):
        BridgeModel.from_encoder(str(folder), anchors=ANCHORS, prefix="query")
    BridgeModel.from_encoder(tiny_encoder_dir, anchors=ANCHORS).save_head(tmp_path / "head")
    with pytest.raises(ValueError, match="include_prompt=false"):
        BridgeModel.from_encoder(str(folder), head=str(tmp_path / "head"), prefix="doc: ")
    assert BridgeModel.from_encoder(str(folder), anchors=ANCHORS, prefix="").config.input_prefix == ""
