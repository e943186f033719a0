"""LoRA on the encoder with peft: anchors never stale, head trainable and saved, reload and merge exact, bad targets."""

from __future__ import annotations

import pytest
import torch
from helpers import make_encoder, make_tokenizer, topic_texts
from peft import PeftModel

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.training.build import apply_lora


def bridge(anchor_texts, refresh: str = "auto", seed: int = 0):
    encoder = make_encoder(0)  # the same base encoder every time
    torch.manual_seed(seed)  # the head's random init depends on `seed`
    return BridgeForSequenceClassification.from_encoder(
        encoder,
        anchors=anchor_texts,
        tokenizer=make_tokenizer(),
        num_labels=5,
        classifier_dropout=0.0,
        anchor_refresh=refresh,
    )


def batch(n=4, seed=1):
    texts, labels = topic_texts(n, seed=seed)
    enc = make_tokenizer()(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": torch.tensor(labels)}


def fresh_anchor_embeddings(model) -> torch.Tensor:
    """What the anchors embed to with the encoder as it is now (LoRA included), computed from scratch."""
    inner = model.get_base_model()
    with torch.no_grad():
        was = inner.encoder.training
        inner.encoder.eval()
        out = inner.embed(**inner.anchors.model_inputs(0, inner.config.num_anchors))
        inner.encoder.train(was)
    return out


def train_steps(model, steps=3, lr=0.05, fused=None):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, fused=fused)
    model.train()
    for i in range(steps):
        loss = model(**batch(seed=i)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_only_lora_and_head_train(anchor_texts):
    model = apply_lora(bridge(anchor_texts), target_modules=["query", "value"], r=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or ".score.modules_to_save." in n for n in trainable)
    assert any(".score.modules_to_save." in n for n in trainable)
    assert not [n for n in trainable if "pooler" in n]


@pytest.mark.parametrize("fused", [None, True], ids=["foreach", "fused"])
def test_stale_anchor_buffer_is_not_used_after_a_lora_step(anchor_texts, fused):
    """``fused``: a fused AdamW (transformers' Trainer default) updates parameters without bumping their ``_version``;
    the anchors stayed those of the first step for the whole run (and differed from a reload's or a merge's)."""
    model = apply_lora(bridge(anchor_texts), target_modules=["query", "value"], r=4)
    inner = model.get_base_model()
    before = inner.anchors.embeddings.clone()
    torch.testing.assert_close(before, fresh_anchor_embeddings(model))
    train_steps(model, steps=1, fused=fused)  # lora_B starts at zero: this first step is what changes the encoder
    assert not torch.allclose(fresh_anchor_embeddings(model), before, atol=1e-4), "LoRA did not change the encoder"
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch().items() if k != "labels"}).logits
    # the forward re-embedded the anchors through the LoRA-wrapped encoder, so the buffer is fresh again ...
    torch.testing.assert_close(inner.anchors.embeddings, fresh_anchor_embeddings(model))
    # ... and the logits are those of the fresh anchors, not of the stale buffer
    b = batch()
    with torch.no_grad():
        features = inner.embed(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        head = inner.head  # peft's ModulesToSaveWrapper: its attributes resolve to the trained copy
        expected = head.classifier(head.represent(features, fresh_anchor_embeddings(model)))
        stale = head.classifier(head.represent(features, before))
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, stale, atol=1e-4)


def test_manual_refresh_leaves_anchors_stale_until_asked(anchor_texts):
    """The control for the test above: with anchor_refresh=manual the buffer does go stale (so staleness is detectable)."""
    model = apply_lora(bridge(anchor_texts, refresh="manual"), target_modules=["query", "value"], r=4)
    inner = model.get_base_model()
    before = inner.anchors.embeddings.clone()
    train_steps(model, steps=1)
    with torch.no_grad():
        model(**{k: v for k, v in batch().items() if k != "labels"})
    torch.testing.assert_close(inner.anchors.embeddings, before)
    inner.refresh_anchors()
    torch.testing.assert_close(inner.anchors.embeddings, fresh_anchor_embeddings(model))


def test_trained_head_copy_is_the_one_used_and_saved(anchor_texts, tmp_path):
    model = apply_lora(bridge(anchor_texts), target_modules=["query", "value"], r=4)
    wrapper = model.get_base_model().head
    original = {k: v.clone() for k, v in wrapper.original_module.state_dict().items()}
    train_steps(model)
    copy = wrapper.modules_to_save["default"].state_dict()
    assert all(torch.equal(original[k], wrapper.original_module.state_dict()[k]) for k in original)
    assert any(not torch.equal(original[k], copy[k]) for k in original)

    model.save_pretrained(tmp_path / "adapter")
    inputs = {k: v for k, v in batch(seed=7).items() if k != "labels"}
    with torch.no_grad():
        expected = model(**inputs).logits
    # a fresh base (new random head) + the adapter: LoRA weights and the trained head come back, anchors re-embed
    other_base = bridge(anchor_texts, seed=123)
    first = next(k for k in original if k.startswith("mlp.") and k.endswith("weight"))
    assert not torch.equal(other_base.head.state_dict()[first], original[first])
    reloaded = PeftModel.from_pretrained(other_base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, rtol=0, atol=1e-6)
        merged = reloaded.merge_and_unload().eval()
        assert type(merged) is BridgeForSequenceClassification
        assert not [n for n, _ in merged.named_modules() if "lora" in n]
        torch.testing.assert_close(merged(**inputs).logits, expected, rtol=0, atol=1e-5)


def test_lora_target_not_in_encoder_lists_valid_names(anchor_texts):
    with pytest.raises(ValueError, match=r"\['q_proj'\] not found in the encoder \(BertModel\).*'query'.*'value'"):
        apply_lora(bridge(anchor_texts), target_modules=["q_proj", "value"])


def test_trainer_default_optimizer_keeps_the_anchors_fresh_and_merge_exact(anchor_texts, tmp_path):
    """The user's path: peft + transformers' Trainer with its default (fused AdamW) optimizer. The anchors are those
    of the trained encoder, so the in-memory model, its merge and its reload all give the same logits."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = apply_lora(bridge(anchor_texts), target_modules=["query", "value"], r=4)
    texts, labels = topic_texts(4, seed=3)
    data = Dataset.from_dict({"text": texts, "label": labels}).map(lambda b: make_tokenizer()(b["text"]), batched=True)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, learning_rate=0.05, report_to=[],
        save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=make_tokenizer())
    assert "fused" in str(args.optim).lower()
    trainer.train()
    model.eval()
    inputs = {k: v for k, v in batch(seed=7).items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits
        torch.testing.assert_close(model.get_base_model().anchors.embeddings, fresh_anchor_embeddings(model))
        merged = model.merge_and_unload().eval()
        torch.testing.assert_close(merged(**inputs).logits, logits, rtol=0, atol=1e-5)


def test_save_head_of_a_peft_model_is_the_trained_copy(anchor_texts, tmp_path):
    """``peft_model.save_head(dir)`` wrote peft's wrapper state (``original_module.*`` and
    ``modules_to_save.default.*`` keys): a head no encoder could load. It is the head the model computes with, the
    same head as the merged model's."""
    from hf_bridges.heads.format import read_head

    model = apply_lora(bridge(anchor_texts), target_modules=["query", "value"], r=4)
    train_steps(model, steps=2)
    saved = read_head(model.save_head(tmp_path / "peft", card=False))
    merged = read_head(model.merge_and_unload().save_head(tmp_path / "merged", card=False))
    assert sorted(saved.state_dict) == sorted(merged.state_dict)
    assert all(torch.equal(saved.state_dict[k], merged.state_dict[k]) for k in merged.state_dict)
    torch.testing.assert_close(saved.anchor_embeddings, merged.anchor_embeddings, rtol=0, atol=1e-3)
    fresh = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), tokenizer=make_tokenizer(), head=str(tmp_path / "peft")
    )
    assert fresh.head.classifier is not None


def test_anchor_refresh_callback_re_embeds_every_n_steps_and_leaves_the_anchors_exact(anchor_texts, tmp_path):
    """``AnchorRefreshCallback(every=2)``: the Trainer path's ``anchor_refresh: steps``. A LoRA run of 5 steps
    re-embeds the anchors at the start, after steps 2 and 4 and at the epoch's end, each time only if the encoder
    changed (not after each of the 5 steps, as ``auto`` does); the model it returns holds the trained encoder's anchors and ``auto`` again."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from hf_bridges.training import AnchorRefreshCallback

    model = apply_lora(bridge(anchor_texts), target_modules=["query", "value"], r=4)
    inner = model.get_base_model()
    refreshes = []
    original = inner.refresh_anchors
    inner.refresh_anchors = lambda: refreshes.append(trainer.state.global_step) or original()
    texts, labels = topic_texts(4, seed=3)  # 20 texts: 5 steps of 4
    data = Dataset.from_dict({"text": texts, "label": labels}).map(lambda b: make_tokenizer()(b["text"]), batched=True)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, learning_rate=0.05,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=data, processing_class=make_tokenizer(),
        callbacks=[AnchorRefreshCallback(every=2)],
    )  # fmt: skip
    trainer.train()
    assert trainer.state.global_step == 5
    # begin (LoRA brought new parameters), steps 2 and 4, the epoch's end (after step 5); the end of training, right
    # after it, re-embeds nothing; never once per step as auto does
    assert refreshes == [0, 2, 4, 5]
    assert inner.config.anchor_refresh == "auto"
    model.eval()
    inputs = {k: v for k, v in batch(seed=7).items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(inner.anchors.embeddings, fresh_anchor_embeddings(model))
        logits = model(**inputs).logits
        merged = model.merge_and_unload().eval()
        torch.testing.assert_close(merged(**inputs).logits, logits, rtol=0, atol=1e-5)


def test_anchor_refresh_callback_refuses_a_bad_interval_and_leaves_a_frozen_bridge_alone(anchor_texts):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_bridges import ConfigError
    from hf_bridges.training import AnchorRefreshCallback

    for every in (0, 2.5, True):
        with pytest.raises(ConfigError, match="whole number >= 1"):
            AnchorRefreshCallback(every=every)
    frozen = bridge(anchor_texts)
    callback = AnchorRefreshCallback()
    callback.on_train_begin(
        TrainingArguments(output_dir="unused", report_to=[]), TrainerState(), TrainerControl(), model=frozen
    )
    assert frozen.config.anchor_refresh == "auto"  # nothing to refresh: the encoder does not train
