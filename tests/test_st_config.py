"""sentence-transformers models: settings read without the library, and stitch embeddings equal
``SentenceTransformer.encode`` (1e-5) for the pooling modes, with/without Normalize, with a prompt name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from hf_bridges.building.sentence_transformers import (
    UnsupportedSentenceTransformer,
    resolve_prompt,
    st_encoder_settings,
)
from hf_bridges.modeling.head import POOLINGS, get_pooling
from hf_bridges.stitching.cache import cache_key
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.encoder_kinds import HFTextEncoder, text_settings

TEXTS = ["the market rallied today", "a film won the award", "vote", "the team won the cup match season goal player"]
PROMPTS = {"query": "film music ", "doc": ""}


class Out:
    def __init__(self, hidden):
        self.last_hidden_state = hidden


def write_st_folder(
    folder,
    pooling_config,
    modules=("Transformer", "Pooling", "Normalize"),
    max_seq_length=8,
    prompts=None,
    default_prompt_name=None,
):
    """A sentence-transformers folder written by hand (legacy ``sentence_transformers.models.*`` types)."""
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    entries = [
        {"idx": i, "name": str(i), "path": paths[k], "type": f"sentence_transformers.models.{k}"}
        for i, k in enumerate(modules)
    ]
    (folder / "modules.json").write_text(json.dumps(entries))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {"prompts": prompts or {}, "default_prompt_name": default_prompt_name, "similarity_fn_name": "cosine"}
        )
    )
    return str(folder)


def embed_with_stitch_kind(spec: EncoderSpec) -> np.ndarray:
    return HFTextEncoder().load(spec)({"text": TEXTS})


def test_hand_written_folder_matches_a_hand_computed_reference(tiny_encoder_dir, tmp_path, one_thread):
    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, folder)
    write_st_folder(folder, {"word_embedding_dimension": 32, "pooling_mode_cls_token": True}, prompts=PROMPTS)
    settings = st_encoder_settings(str(folder))
    assert (settings["pooling"], settings["normalize"], settings["max_seq_length"], settings["prompts"]) == (
        "cls",
        True,
        8,
        PROMPTS,
    )
    got = embed_with_stitch_kind(EncoderSpec(id=str(folder), prefix="query"))
    # by hand: prompt prepended, truncated at 8 tokens, first token's state, L2-normalised
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    rows = []
    for text in TEXTS:
        ids = tok("film music " + text, truncation=True, max_length=8, return_tensors="pt")
        with torch.no_grad():
            first = model(**ids).last_hidden_state[0, 0]
        rows.append((first / first.norm()).numpy())
    np.testing.assert_allclose(got, np.stack(rows), rtol=0, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_explicit_config_wins_and_identity_covers_normalize(tiny_encoder_dir, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, folder)
    write_st_folder(folder, {"pooling_mode": "max"}, prompts=PROMPTS, default_prompt_name="query")
    kind = HFTextEncoder()
    from_st = kind.identity(EncoderSpec(id=str(folder)))
    assert (from_st["pooling"], from_st["max_length"], from_st["prefix"], from_st["normalize"]) == (
        "max",
        8,
        "film music ",
        True,
    )  # the default prompt applies when the config names none
    explicit = text_settings(EncoderSpec(id=str(folder), pooling="cls", max_length=5, prefix="doc: "))
    assert (explicit["pooling"], explicit["max_length"], explicit["prefix"]) == ("cls", 5, "doc: ")
    plain = kind.identity(EncoderSpec(id=tiny_encoder_dir))
    assert "normalize" not in plain and plain["pooling"] == "mean"  # plain encoders: keys as before
    write_st_folder(folder, {"pooling_mode": "max"}, modules=("Transformer", "Pooling"))
    unnormalised = kind.identity(EncoderSpec(id=str(folder)))
    assert "normalize" not in unnormalised
    assert cache_key(unnormalised, "fp") != cache_key({**unnormalised, "normalize": True}, "fp")


def test_unsupported_pipelines_are_named(tiny_encoder_dir, tmp_path):
    write_st_folder(tmp_path, {"pooling_mode": "mean"}, modules=("Transformer", "Pooling", "Dense"))
    with pytest.raises(UnsupportedSentenceTransformer, match=r"Dense \('2_Dense'\).*Transformer -> Pooling"):
        st_encoder_settings(str(tmp_path))
    write_st_folder(tmp_path, {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True})
    with pytest.raises(UnsupportedSentenceTransformer, match=r"\['mean', 'max'\] are concatenated"):
        st_encoder_settings(str(tmp_path))
    write_st_folder(tmp_path, {"pooling_mode": "median"})
    with pytest.raises(ValueError, match="'median' is not supported; supported: .*lasttoken"):
        st_encoder_settings(str(tmp_path))
    assert st_encoder_settings(tiny_encoder_dir) == {}  # a plain transformers folder
    assert st_encoder_settings(torch.nn.Linear(2, 2)) == {}


def test_prompt_names_resolve():
    settings = {"prompts": PROMPTS, "default_prompt_name": None}
    assert resolve_prompt(settings, "query") == "film music "
    assert resolve_prompt(settings, "passage: ") == "passage: "
    assert resolve_prompt(settings, None) == ""


def test_new_poolings_by_hand_with_left_and_right_padding():
    assert {"mean_sqrt_len", "weightedmean", "lasttoken"} <= set(POOLINGS)
    hidden = torch.arange(8, dtype=torch.float).view(2, 4, 1)  # row0 0..3, row1 4..7
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])  # left-padded, right-padded
    out = Out(hidden)
    assert get_pooling("lasttoken")(out, mask).flatten().tolist() == [3.0, 6.0]
    # weights 1, 2, ... from the first kept token: (2*1 + 3*2) / 3 and (4*1 + 5*2 + 6*3) / 6
    torch.testing.assert_close(get_pooling("weightedmean")(out, mask).flatten(), torch.tensor([8 / 3, 32 / 6]))
    torch.testing.assert_close(
        get_pooling("mean_sqrt_len")(out, mask).flatten(), torch.tensor([5 / 2**0.5, 15 / 3**0.5])
    )
    assert get_pooling("lasttoken")(out, None).flatten().tolist() == [3.0, 7.0]


# ----------------------------------------------------------------------------- against sentence-transformers
@pytest.mark.parametrize("mode", ["cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
@pytest.mark.parametrize("normalize", [True, False])
def test_stitch_embeddings_equal_sentence_transformers_encode(tiny_encoder_dir, tmp_path, mode, normalize, one_thread):
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = [Transformer(tiny_encoder_dir, max_seq_length=6), Pooling(32, pooling_mode=mode)]
    if normalize:
        modules.append(Normalize())
    model = st.SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu")
    folder = tmp_path / "st"
    model.save(str(folder))
    expected = model.encode(TEXTS, prompt_name="query", convert_to_numpy=True)
    got = embed_with_stitch_kind(EncoderSpec(id=str(folder), prefix="query"))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    plain = embed_with_stitch_kind(EncoderSpec(id=str(folder)))
    np.testing.assert_allclose(plain, model.encode(TEXTS, convert_to_numpy=True), rtol=0, atol=1e-5)

    loaded = st_encoder_settings(model)  # a loaded object: same settings, plus its model and tokenizer
    saved = st_encoder_settings(str(folder))
    keys = ("pooling", "normalize", "max_seq_length")
    assert [loaded[k] for k in keys] == [saved[k] for k in keys] and saved["normalize"] is normalize
    assert loaded["prompts"]["query"] == saved["prompts"]["query"] == PROMPTS["query"]
    assert loaded["model"] is not None and loaded["tokenizer"] is not None


def test_unset_spec_fields_come_from_the_st_model_and_set_ones_always_win(tiny_encoder_dir, tmp_path):
    """EncoderSpec pooling / max_seq_length / prefix / normalize default to None ("from the ST model"): a value
    written in the config wins even when it equals the generic default (mean / 128 / "")."""
    from hf_bridges.stitching import parse_config

    folder = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, folder)
    write_st_folder(folder, {"pooling_mode": "cls"}, max_seq_length=16, prompts=PROMPTS, default_prompt_name="query")
    unset = EncoderSpec(id=str(folder))
    assert (unset.pooling, unset.max_seq_length, unset.prefix, unset.normalize) == (None, None, None, None)
    got = text_settings(unset)
    assert (got["pooling"], got["max_length"], got["prefix"], got["normalize"]) == ("cls", 16, "film music ", True)
    explicit = text_settings(
        EncoderSpec(id=str(folder), pooling="mean", max_seq_length=128, prefix="", normalize=False)
    )
    assert (explicit["pooling"], explicit["max_length"], explicit["prefix"], explicit["normalize"]) == (
        "mean",
        128,
        "",
        False,
    )
    plain = text_settings(EncoderSpec(id=tiny_encoder_dir))
    assert (plain["pooling"], plain["max_length"], plain["prefix"], plain["normalize"]) == ("mean", 128, "", False)
    parsed = parse_config({"encoders": [{"id": str(folder)}], "methods": [{"name": "cos"}]})
    assert parsed.encoders[0].pooling is None  # no choice check on an unset field
    with pytest.raises(ValueError, match="did you mean 'mean'"):
        parse_config({"encoders": [{"id": str(folder), "pooling": "meen"}], "methods": [{"name": "cos"}]})
