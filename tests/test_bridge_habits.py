"""Habits of transformers users on a bridge: label names from a ``datasets.ClassLabel``, the saved tokenizer's
``model_max_length``, ``pipeline("text-classification")`` on a saved folder (no tokenizer passed) and on the
object, long texts cut at ``max_seq_length``, and a Trainer card naming the base encoder, data, metrics and
hyper-parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset
from helpers import make_encoder, make_tokenizer, topic_texts
from hub_server import TOKEN, hub_fixture
from huggingface_hub import hf_hub_download
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, pipeline

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.metrics import classification_scores

hub = pytest.fixture(hub_fixture)
NAMES = ["business", "entertainment", "politics", "sport", "tech"]


def test_labels_tokenizer_length_and_pipelines(anchor_texts, tmp_path, one_thread):
    tokenizer = make_tokenizer()
    bridge = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, max_seq_length=16, labels=ClassLabel(names=NAMES)
    )
    assert (bridge.config.num_labels, bridge.config.id2label[3], bridge.config.label2id["tech"]) == (5, "sport", 4)
    assert bridge.tokenizer.model_max_length == 16 and tokenizer.model_max_length != 16  # the caller's is untouched
    for labels in (NAMES, dict(enumerate(NAMES))):
        again = BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=anchor_texts[:4], tokenizer=tokenizer, labels=labels
        )
        assert again.config.id2label == dict(enumerate(NAMES))
    with pytest.raises(ValueError, match="names 5 classes but num_labels=3"):
        BridgeForSequenceClassification.from_encoder(
            make_encoder(0), anchors=anchor_texts[:4], tokenizer=tokenizer, labels=NAMES, num_labels=3
        )
    folder = tmp_path / "bridge"
    bridge.save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).model_max_length == 16

    long_text = " ".join(anchor_texts) * 3  # far more than the tiny encoder's 64 positions
    assert len(tokenizer(long_text)["input_ids"]) > 64
    with torch.no_grad():  # the reference: the text tokenised as the anchors were (cut at 16 tokens)
        probs = bridge.eval()(**bridge.tokenize(long_text)).logits.softmax(-1)[0]
    best = int(probs.argmax())
    from_folder = pipeline("text-classification", model=str(folder), device="cpu")  # no tokenizer passed
    from_object = pipeline("text-classification", model=bridge, tokenizer=bridge.tokenizer, device="cpu")
    for classify in (from_folder, from_object):
        (result,) = classify(long_text)  # no truncation=True: must not crash, cut at 16 not 512
        assert result["label"] == NAMES[best]
        assert result["score"] == pytest.approx(float(probs[best]), abs=1e-5)
        (cut,) = classify(long_text, truncation=True)
        assert cut["score"] == pytest.approx(float(probs[best]), abs=1e-5)


@pytest.fixture(scope="module")
def minilm():
    """A real Hub encoder from the HF cache, loaded before the loopback Hub takes over the cache path."""
    from transformers import AutoModel

    name = "sentence-transformers/paraphrase-MiniLM-L3-v2"
    return AutoModel.from_pretrained(name), AutoTokenizer.from_pretrained(name)


def test_trainer_card_names_encoder_dataset_metrics_and_hyperparameters(minilm, hub, tmp_path, one_thread):
    (encoder, tokenizer), name = minilm, "sentence-transformers/paraphrase-MiniLM-L3-v2"
    texts, labels = topic_texts(6, seed=3)
    bridge = BridgeForSequenceClassification.from_encoder(
        encoder, anchors=texts[::3], tokenizer=tokenizer, labels=NAMES, max_seq_length=32
    )
    data = Dataset.from_dict({"text": texts, "label": labels}).map(
        lambda batch: bridge.tokenize(batch["text"], padding=False, return_tensors=None),
        batched=True,
        remove_columns=["text"],
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        eval_strategy="steps",
        eval_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        save_strategy="no",
        hub_model_id="alice/bridge-card",
        hub_token=TOKEN,
    )
    trainer = Trainer(
        model=bridge,
        args=args,
        train_dataset=data,
        eval_dataset=data,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=lambda p: classification_scores(np.argmax(p.predictions, axis=-1), p.label_ids),
    )
    trainer.train()
    trainer.push_to_hub(dataset="bbc_news", dataset_tags="SetFit/bbc-news")
    card = Path(hf_hub_download("alice/bridge-card", "README.md", token=TOKEN)).read_text()
    assert f"base_model: {name}" in card
    assert f"fine-tuned version of [{name}](https://huggingface.co/{name}) on the bbc_news dataset" in card
    for expected in (
        "- hf-bridges",
        "- relative-representations",
        "SetFit/bbc-news",
        "Accuracy",
        "Macro F1",
        "learning_rate: 0.003",
        "train_batch_size: 8",
        "training_steps: 2",
    ):
        assert expected in card, expected
