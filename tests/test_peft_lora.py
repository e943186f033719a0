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


def train_steps(model, steps=3, lr=0.05, fused: bool = False):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, fused=fused or None)
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


# fused: torch's fused AdamW, Trainer's default optimizer (adamw_torch_fused), updates the weights without bumping
# their version counters; the anchors must still be re-embedded after its step
@pytest.mark.parametrize("fused", [False, True], ids=["adamw", "fused-adamw"])
def test_stale_anchor_buffer_is_not_used_after_a_lora_step(anchor_texts, fused):
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
