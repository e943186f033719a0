"""transformers.Trainer with bridge models: frozen encoder and LoRA; best-model reload, checkpoint limits, resume,
accuracy + macro-F1 in evaluate(), optimizer scope."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import make_encoder, make_tokenizer, topic_texts
from peft import PeftModel
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

import hf_bridges
from hf_bridges import BridgeForSequenceClassification
from hf_bridges.metrics import classification_scores
from hf_bridges.training.build import apply_lora


def dataset(n_per_class: int, seed: int) -> Dataset:
    texts, labels = topic_texts(n_per_class, seed=seed)
    enc = make_tokenizer()(texts, truncation=True, max_length=32)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels})


def compute_metrics(prediction) -> dict[str, float]:
    return classification_scores(np.argmax(prediction.predictions, axis=-1), prediction.label_ids)


def bridge(anchor_texts, lora: bool):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=make_tokenizer(), num_labels=5, classifier_dropout=0.0
    )
    return apply_lora(model, target_modules=["query", "value"], r=4) if lora else model


def trainer(model, out: Path, max_steps: int, learning_rate: float = 5e-3) -> Trainer:
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=learning_rate,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        # greater_is_better=True on the loss: the "best" is the highest eval loss, i.e. an early checkpoint (the
        # loss falls on this toy task, with or without LoRA), so reloading it at the end is observable instead of
        # coinciding with the last step
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=True,
        logging_steps=2,
        report_to=[],
        use_cpu=True,
        seed=0,
        label_names=["labels"],
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset(8, seed=1),
        eval_dataset=dataset(4, seed=2),
        data_collator=DataCollatorWithPadding(make_tokenizer()),
        compute_metrics=compute_metrics,
    )


def logits_of(model, data: Dataset) -> torch.Tensor:
    batch = DataCollatorWithPadding(make_tokenizer())([data[i] for i in range(len(data))])
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("lora", [False, True], ids=["frozen", "lora"])
def test_trainer_best_model_limit_resume_and_metrics(anchor_texts, tmp_path, lora):
    model = bridge(anchor_texts, lora)
    # LoRA: 3e-3 puts the lowest F1 at step 4 of 6 (with anchors re-embedded after every fused-AdamW step)
    learning_rate = 3e-3 if lora else 5e-3
    t = trainer(model, tmp_path, max_steps=6, learning_rate=learning_rate)
    t.train()

    # optimizer scope: the head only when frozen; LoRA matrices + the head copy with LoRA
    optimized = {id(p) for group in t.optimizer.param_groups for p in group["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in optimized}
    if lora:
        assert names and all("lora_" in n or ".score.modules_to_save." in n for n in names)
    else:
        assert optimized == {id(p) for p in model.head.parameters()}

    # save_total_limit=2 with load_best_model_at_end keeps the best and the last checkpoint (with 1, transformers
    # 5.24 kept only the best here, so there was no last checkpoint to resume from)
    checkpoints = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    best = t.state.best_model_checkpoint
    losses = [h["eval_loss"] for h in t.state.log_history if "eval_loss" in h]
    assert len(losses) == 3 and losses[-1] < max(losses)
    assert checkpoints == sorted([Path(best).name, "checkpoint-6"]) and Path(best).name != "checkpoint-6"
    assert t.state.best_metric == pytest.approx(max(losses))
    best_f1 = next(h["eval_macro_f1"] for h in t.state.log_history if h.get("eval_loss") == max(losses))

    # the model in memory is the best checkpoint's (reloaded at the end), with fresh anchors for its weights
    metrics = t.evaluate()
    assert {"eval_accuracy", "eval_macro_f1", "eval_loss"} <= set(metrics)
    assert metrics["eval_macro_f1"] == pytest.approx(best_f1)
    if not lora:  # the Trainer's metrics name the accuracy eval_accuracy: the head stores it for the estimate
        model.save_head(tmp_path / "head", metrics=metrics)
        stored = json.loads((tmp_path / "head" / "bridge_head_config.json").read_text())
        assert stored["validation_accuracy"] == pytest.approx(metrics["eval_accuracy"])
        assert stored["hf_bridges_version"] == hf_bridges.__version__  # the running code's, not stale metadata
    eval_logits = logits_of(model, t.eval_dataset)
    if lora:
        reloaded = PeftModel.from_pretrained(bridge(anchor_texts, lora=False), best)
    else:
        reloaded = BridgeForSequenceClassification.from_pretrained(best)
    torch.testing.assert_close(logits_of(reloaded, t.eval_dataset), eval_logits, rtol=0, atol=1e-5)
    last = (
        PeftModel.from_pretrained(bridge(anchor_texts, lora=False), tmp_path / "checkpoint-6")
        if lora
        else BridgeForSequenceClassification.from_pretrained(tmp_path / "checkpoint-6")
    )
    assert not torch.allclose(logits_of(last, t.eval_dataset), eval_logits, atol=1e-3)

    # resume from the last checkpoint: training continues at step 6 and reaches 8
    resumed = trainer(bridge(anchor_texts, lora), tmp_path, max_steps=8, learning_rate=learning_rate)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))
    assert resumed.state.global_step == 8
    assert any(h.get("step") == 8 and "eval_macro_f1" in h for h in resumed.state.log_history)
