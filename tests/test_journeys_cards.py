"""Issue 19 item 9: every card the package writes (full model save_pretrained / push_to_hub, the Trainer's card
through ``BridgeTrainerCardMixin``, head cards) carries the bridge's metadata, parses with ``ModelCard`` /
``ModelCardData`` both ways, and its load snippet runs as written (extracted from the card, run in a fresh process
against the saved folder).

A real pretrained encoder (paraphrase-MiniLM-L3, offline HF cache) so ``base_model`` is a Hub id; the push goes over
real HTTP to ``tests/hub_server.py``.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from helpers import topic_texts
from hub_server import TOKEN, hub_fixture
from huggingface_hub import HfApi, ModelCard, ModelCardData

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.cards import BridgeTrainerCardMixin, anchors_sha256, template_path

L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"
ROOT = Path(__file__).resolve().parents[1]
hub = pytest.fixture(hub_fixture)
ANCHORS, LABELS = topic_texts(4, seed=21)  # 20 anchors
ALIGNMENT = topic_texts(2, seed=22)[0]  # + 10 alignment inputs


@pytest.fixture(scope="module")
def model():
    return BridgeForSequenceClassification.from_encoder(
        L3, anchors=ANCHORS, anchor_labels=LABELS, alignment_inputs=ALIGNMENT, num_labels=5, max_seq_length=32
    ).eval()


def _snippet(card: ModelCard, heading: str) -> str:
    found = re.search(rf"## {heading}.*?```python\n(.*?)```", card.text, re.S)
    assert found, card.text
    return found.group(1)


def _run(snippet: str, tmp_path: Path, env: dict | None = None) -> str:
    """The snippet as written, in a fresh process started in another folder."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (snippet, done.stderr[-4000:])
    return done.stdout


def _round_trip(card: ModelCard) -> dict:
    """The metadata survives README text -> ModelCard -> ModelCardData -> YAML unchanged."""
    data = card.data.to_dict()
    assert ModelCard(str(card)).data.to_dict() == data
    assert ModelCardData(**data).to_dict() == data
    return data


def _common(data: dict, library: str, revision: bool = True) -> None:
    assert data["base_model"] == L3 and data["base_model_relation"] == "adapter"
    assert data["library_name"] == library and data["pipeline_tag"] == "text-classification"
    meta = data["hf_bridges"]
    assert meta["anchors"] == {"sha256": anchors_sha256([*ANCHORS, *ALIGNMENT]), "relative": 20, "alignment": 10}
    assert meta["num_anchors"] == 20
    encoder = meta["encoder"]
    assert encoder["name_or_path"] == L3 and encoder["pooling"] == "mean" and encoder["input_prefix"] == ""
    if revision:  # the commit the encoder was loaded at, read from the HF cache (the hub fixture swaps the cache)
        assert re.fullmatch(r"[0-9a-f]{40}", encoder["revision"])


def test_templates_have_one_source():
    assert (ROOT / "hf_bridges" / "model_cards").resolve() == (ROOT / "model_cards").resolve()
    assert template_path("model_card.md").resolve() == (ROOT / "model_cards" / "model_card.md").resolve()


@pytest.mark.subprocess
def test_save_pretrained_writes_the_bridge_card_and_its_snippet_runs(model, tmp_path):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    card = ModelCard.load(folder / "README.md")
    assert "Model Card for Model ID" not in card.text
    data = _round_trip(card)
    _common(data, "transformers")
    assert "20 fixed anchor inputs (+ 10 alignment inputs" in card.text
    snippet = _snippet(card, "Load it")
    assert "trust_remote_code=True" in snippet and str(folder.resolve()) in snippet
    out = _run(snippet, tmp_path)
    assert "tensor(" in out and out.count(",") >= 4  # 5 logits
    (folder / "README.md").write_text("# my own notes\n")
    model.save_pretrained(folder)  # a user's own card is kept
    assert (folder / "README.md").read_text() == "# my own notes\n"


@pytest.mark.subprocess
def test_push_to_hub_writes_the_bridge_card_not_the_blank_template(hub, model, tmp_path):
    model.push_to_hub("alice/bridge", token=TOKEN)
    card = ModelCard.load("alice/bridge", token=TOKEN)
    assert "Model Card for Model ID" not in card.text
    data = _round_trip(card)
    _common(data, "transformers", revision=False)
    assert data["hf_bridges"]["repo_id"] == "alice/bridge"
    snippet = _snippet(card, "Load it")
    assert 'from_pretrained("alice/bridge", trust_remote_code=True)' in snippet
    assert "tensor(" in _run(snippet, tmp_path, {**hub.env, "HF_TOKEN": TOKEN})
    HfApi(token=TOKEN).upload_file(path_or_fileobj=b"# mine\n", path_in_repo="README.md", repo_id="alice/bridge")
    model.push_to_hub("alice/bridge", token=TOKEN)  # the repo's own (user-written) card stays
    assert ModelCard.load("alice/bridge", token=TOKEN).text.strip() == "# mine"


@pytest.mark.subprocess
def test_head_card_says_what_the_head_is_and_its_snippet_runs(model, tmp_path):
    rows = [{"encoder": L3, "stitch_score": 1.0, "accuracy": 0.9}, {"encoder": "org/other", "accuracy": 0.7}]
    folder = model.save_head(tmp_path / "head", dataset="bbc_news", stitching_results=rows)
    card = ModelCard.load(Path(folder) / "README.md")
    data = _round_trip(card)
    _common(data, "hf_bridges")
    meta = data["hf_bridges"]
    encoder_tags = {t.split(":", 1)[1] for t in data["tags"] if t.startswith("hf-bridges-encoder:")}
    assert encoder_tags == {meta["trained_on"], *meta["measured_on"]} and meta["measured_on"] == ["org/other", L3]
    assert {(r["name"], r["value"]) for r in data["model-index"][0]["results"][0]["metrics"]} >= {
        (f"accuracy on {L3}", 0.9)
    }
    # the text describes this head (the default: relative + aligned, summed), with the counts the metadata has
    assert "Aligned component" in card.text and "`sum`" in card.text and "paper" not in card.text
    assert "through 20 fixed anchor inputs (plus an alignment set of 10 inputs" in card.text
    snippet = _snippet(card, "Attach the head")
    assert f'head="{Path(folder).resolve()}"' in snippet
    assert "stitch_score" in _run(snippet, tmp_path).replace("score", "stitch_score")
    # metrics alone: the training encoder is where it was measured, and the tags say the same
    data = ModelCard.load(Path(model.save_head(tmp_path / "h2", metrics={"accuracy": 0.8})) / "README.md").data
    assert data.hf_bridges["measured_on"] == [L3] and f"hf-bridges-encoder:{L3}" in data.tags


def test_trainer_card_carries_the_bridge_metadata_and_load_line(model, tmp_path):
    from transformers import Trainer, TrainingArguments

    class BridgeTrainer(BridgeTrainerCardMixin, Trainer):
        pass

    bridge = copy.deepcopy(model)
    bridge.tokenizer = model.tokenizer
    texts, labels = topic_texts(4, seed=23)
    enc = model.tokenizer(texts, truncation=True, max_length=32)
    data = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=8, report_to=[], use_cpu=True
    )
    trainer = BridgeTrainer(
        model=bridge,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        processing_class=model.tokenizer,
        compute_metrics=lambda p: {"accuracy": float(np.mean(p.predictions.argmax(-1) == p.label_ids))},
    )
    trainer.train()
    trainer.evaluate()
    trainer.save_model()
    trainer.create_model_card(dataset="topics", dataset_tags="topics")
    card = ModelCard.load(tmp_path / "run" / "README.md")
    data = _round_trip(card)
    _common(data, "transformers")
    assert "generated_from_trainer" in data["tags"] and "hf-bridges" in data["tags"]
    assert data["model-index"][0]["results"][0]["task"]["type"] == "text-classification"
    assert "This model is a fine-tuned version of" in card.text  # the Trainer's summary stays
    assert "trust_remote_code=True" in _snippet(card, "Load it")
