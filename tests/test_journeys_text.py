"""User journeys on text (issue 19 items 3, 5-8): a reloaded bridge re-saved or pushed keeps its tokenizer and serves
a pipeline; ``encode`` / ``predict`` / ``predict_proba`` on texts equal ``forward``; the object-form pipeline finds
the bridge's tokenizer; progress bars follow the Hugging Face switches, not the terminal; the README quick start is
the example script, and each warning on its path is said once."""

from __future__ import annotations

import importlib
import json
import logging
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_encoder, make_tokenizer, topic_texts
from hub_server import TOKEN, hub_fixture
from huggingface_hub import HfApi
from transformers import AutoModelForSequenceClassification, pipeline

from hf_bridges import BridgeForSequenceClassification, BridgeModel, HfBridgesError
from hf_bridges import logging as hb_logging

hub = pytest.fixture(hub_fixture)
NAMES = ["business", "entertainment", "politics", "sport", "tech"]
ROOT = Path(__file__).resolve().parents[1]


def mixed_texts(n: int, seed: int = 5) -> list[str]:
    """Texts from 1 to ~24 words, interleaved so that input order is far from length order."""
    texts, _ = topic_texts(n // 5 + 1, seed=seed)
    return [" ".join([t] * (1 + (7 * i) % 4)) if i % 3 else t.split()[0] for i, t in enumerate(texts[:n])]


@pytest.fixture()
def bridge(anchor_texts, tokenizer, one_thread):
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, labels=NAMES, max_seq_length=48
    ).eval()


def forward(model, texts):
    with torch.no_grad():
        return model(**model.tokenize(texts), output_representations=True)


# ---------------------------------------------------------------------------------------------------- item 3
def test_reloaded_bridge_resaved_or_pushed_keeps_its_tokenizer_and_serves_a_pipeline(bridge, hub, tmp_path):
    texts = mixed_texts(6)
    expected = forward(bridge, texts).logits.softmax(-1)
    first = tmp_path / "first"
    bridge.save_pretrained(first)
    reloaded = AutoModelForSequenceClassification.from_pretrained(first)
    assert reloaded.tokenizer is None  # loaded on first use ...
    reloaded.save_pretrained(tmp_path / "again")  # ... and so also by a save
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "again").iterdir()}
    AutoModelForSequenceClassification.from_pretrained(first).push_to_hub("alice/reloaded", token=TOKEN)
    pushed = {f.rfilename for f in HfApi(token=TOKEN).model_info("alice/reloaded").siblings}
    assert {"tokenizer.json", "tokenizer_config.json", "model.safetensors", "modeling_bridge.py"} <= pushed
    reloaded = AutoModelForSequenceClassification.from_pretrained(first)
    reloaded.save_pretrained(tmp_path / "via-save", push_to_hub=True, repo_id="alice/via-save", token=TOKEN)
    pushed = {f.rfilename for f in HfApi(token=TOKEN).model_info("alice/via-save").siblings}
    assert {"tokenizer.json", "tokenizer_config.json", "model.safetensors"} <= pushed
    for source in (str(tmp_path / "again"), "alice/reloaded"):
        classify = pipeline("text-classification", model=source, trust_remote_code=True, device="cpu", top_k=None)
        for scores, probs in zip(classify(texts), expected):
            got = {s["label"]: s["score"] for s in scores}
            assert [got[name] for name in NAMES] == pytest.approx(probs.tolist(), abs=1e-5)


# ---------------------------------------------------------------------------------------------------- item 5
def test_encode_and_predict_equal_forward_in_whole_list_length_order(bridge, anchor_texts, monkeypatch):
    texts = mixed_texts(70)  # more than a 32-row window: a window sort would leave ragged batches
    reference = forward(bridge, texts)
    widths, calls = [], []
    hook = bridge.encoder.register_forward_pre_hook(
        lambda m, a, kw: widths.append(kw["input_ids"].shape), with_kwargs=True
    )
    tokenizer_class = type(bridge.tokenizer)
    call = tokenizer_class.__call__
    monkeypatch.setattr(tokenizer_class, "__call__", lambda self, *a, **k: calls.append(1) or call(self, *a, **k))
    try:
        embeddings = bridge.encode(texts, batch_size=8)
    finally:
        hook.remove()
    assert isinstance(embeddings, np.ndarray) and embeddings.shape == tuple(reference.embeddings.shape)
    np.testing.assert_allclose(embeddings, reference.embeddings.numpy(), atol=1e-6, rtol=0)
    assert len(calls) == 1  # tokenised once, for the whole list
    lengths = sorted(len(row) for row in bridge.tokenizer(texts, truncation=True, max_length=48)["input_ids"])
    assert [w[1] for w in widths] == lengths[::-1][::8]  # every batch: the longest rows left, over ALL rows
    assert sum(w[0] for w in widths) == 70

    relative = bridge.encode(texts, batch_size=8, output_value="relative_representation", convert_to_tensor=True)
    torch.testing.assert_close(relative, reference.relative_representation, atol=1e-6, rtol=1e-6)
    normalized = bridge.encode(texts, batch_size=8, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(normalized.norm(dim=-1), torch.ones(70), atol=1e-6, rtol=0)
    assert bridge.encode(texts[3]).shape == (reference.embeddings.shape[1],)  # one text -> one vector
    assert len(bridge.encode(texts[:4], convert_to_numpy=False)) == 4  # a list of tensors, as sentence-transformers

    probs = bridge.predict_proba(texts, batch_size=8)
    torch.testing.assert_close(probs, reference.logits.softmax(-1), atol=1e-6, rtol=0)
    ids = reference.logits.argmax(-1)
    assert bridge.predict(texts, batch_size=8) == [NAMES[i] for i in ids]
    assert torch.equal(bridge.predict(texts, use_labels=False), ids)
    assert bridge.predict(texts[5]) == NAMES[ids[5]]
    assert bridge.training is False and bridge.predict_proba(texts[:2], as_numpy=True).shape == (2, 5)

    plain = BridgeModel.from_encoder(make_encoder(0), anchors=anchor_texts, tokenizer=make_tokenizer()).eval()
    torch.testing.assert_close(
        plain.encode(texts, output_value="relative_representation", convert_to_tensor=True),
        forward(plain, texts).relative_representation,
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(HfBridgesError, match="no classifier"):
        plain.predict(texts)
    with pytest.raises(HfBridgesError, match="output_value"):
        bridge.encode(texts, output_value="token_embeddings")


def test_embed_on_texts_points_to_encode(bridge):
    with pytest.raises(HfBridgesError, match=r"model\.encode\(texts\)"):
        bridge.embed(["a market", "the film"])
    with pytest.raises(HfBridgesError, match="takes texts"):
        bridge.encode([1, 2])


# ---------------------------------------------------------------------------------------------------- item 6
def test_object_pipelines_find_the_bridge_tokenizer(bridge, anchor_texts):
    texts = mixed_texts(5)
    classify = pipeline("text-classification", model=bridge, device="cpu")  # no tokenizer=
    probs = forward(bridge, texts).logits.softmax(-1)
    for result, row in zip(classify(texts), probs):
        assert result["label"] == NAMES[int(row.argmax())] and result["score"] == pytest.approx(float(row.max()))
    plain = BridgeModel.from_encoder(make_encoder(0), anchors=anchor_texts, tokenizer=make_tokenizer()).eval()
    extract = pipeline("feature-extraction", model=plain, device="cpu")
    got = torch.tensor([row[0] for row in extract(texts)])
    torch.testing.assert_close(got, forward(plain, texts).relative_representation, atol=1e-6, rtol=1e-6)
    with pytest.raises(Exception, match="Impossible to guess which tokenizer"):  # other models: as before
        pipeline("feature-extraction", model=make_encoder(0), device="cpu")


def test_object_pipeline_when_transformers_pipelines_is_imported_after_the_bridge(bridge, monkeypatch):
    """A bridge imported first does not import transformers.pipelines (seconds): its registration runs when that
    module is executed. Re-executed here under a post-import hook, then the session's module is put back."""
    import transformers

    from hf_bridges.pipelines import register_bridge_pipelines

    monkeypatch.delitem(sys.modules, "transformers.pipelines")
    monkeypatch.setattr(transformers, "pipelines", transformers.pipelines)  # restored afterwards
    register_bridge_pipelines()  # what importing a bridge does
    fresh = importlib.import_module("transformers.pipelines")
    assert fresh.PIPELINE_REGISTRY.supported_tasks["text-classification"]["impl"]._hf_bridges_pipeline
    assert not any(type(f).__name__ == "_RegisterOnImport" for f in sys.meta_path)  # the hook stepped aside
    (result,) = fresh.pipeline("text-classification", model=bridge, device="cpu")(["the market fell"])
    assert result["label"] == bridge.predict("the market fell")


# ---------------------------------------------------------------------------------------------------- item 7
def test_progress_bars_follow_the_hf_switches_not_the_terminal(bridge, capsys, caplog):
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    texts = mixed_texts(12)
    capsys.readouterr()  # what building the bridge printed
    assert not sys.stderr.isatty()  # captured: as in a log file or a notebook
    bridge.refresh_anchors()
    assert f"{bridge.config.num_anchors}/{bridge.config.num_anchors}" in capsys.readouterr().err
    with caplog.at_level(logging.INFO, logger="hf_bridges"):
        bridge.encode(texts, batch_size=4)
    bar = capsys.readouterr().err
    assert "sentence embedding of 12 texts" in bar and "12/12" in bar
    records = [r.getMessage() for r in caplog.records if r.name.startswith("hf_bridges.modeling")]
    assert len(records) == 1 and "12 rows" in records[0]  # what, and how many rows: once per call

    for disable, enable in (
        (disable_progress_bars, enable_progress_bars),  # HF_HUB_DISABLE_PROGRESS_BARS does the same
        (hb_logging.disable_progress_bar, hb_logging.enable_progress_bar),  # the "hf_bridges" group only
        (hf_logging.disable_progress_bar, hf_logging.enable_progress_bar),
    ):
        disable()
        try:
            bridge.encode(texts, batch_size=4)
            bridge.refresh_anchors()
        finally:
            enable()
        assert capsys.readouterr().err == ""
    bridge.encode(texts, batch_size=4, show_progress_bar=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------------- item 8
def test_readme_quick_start_is_the_example_script():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert code.strip() in example  # the README runs as examples/quickstart.py does (timed there)
    assert "model.encode(" in code and "features=" in code and "minutes" in section


def test_each_warning_on_the_quick_start_path_is_said_once(hub, tokenizer, anchor_texts, tmp_path, one_thread):
    texts = [*anchor_texts, anchor_texts[0]]  # one duplicate anchor
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=texts, tokenizer=tokenizer, labels=NAMES
        )
        folder = model.save_head(tmp_path / "head")
        model.push_head_to_hub("alice/head", token=TOKEN)
        model.push_head_to_hub("alice/head", token=TOKEN)
        BridgeForSequenceClassification.from_encoder(make_encoder(1), head=folder, tokenizer=tokenizer)
    messages = [str(w.message) for w in caught]
    assert sum("duplicates" in m for m in messages) == 1, json.dumps(messages, indent=1)
    assert not any("data file" in m for m in messages), json.dumps(messages, indent=1)
    with pytest.warns(UserWarning, match="1 of the 21 anchors are duplicates"):  # embedded later (quick start)
        BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=texts, tokenizer=tokenizer, labels=NAMES, embed_anchors=False
        )
