"""The plain peft recipe on a bridge: the whole head trained, saved and restored; anchors always match the adapter.

    get_peft_model(bridge, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))

peft's SEQ_CLS model wraps (ModulesToSaveWrapper) every module whose path ends in ``classifier`` / ``score``: the
bridge registers its head as ``score`` so all of it (norms, aggregation, MLP) is trained and in the adapter.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_encoder, make_tokenizer, topic_texts
from peft import AutoPeftModelForSequenceClassification, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.training.build import apply_lora

RECIPE = dict(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])


def build(anchor_texts, seed=0):
    torch.manual_seed(seed)  # the head's random init
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=make_tokenizer(), num_labels=5, classifier_dropout=0.0
    )


def batch(seed=1, labels=True):
    texts, y = topic_texts(4, seed=seed)
    enc = make_tokenizer()(texts, padding=True, return_tensors="pt")
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return {**out, "labels": torch.tensor(y)} if labels else out


def train(model, steps=2, lr=0.05):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for i in range(steps):
        model(**batch(seed=i)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def fresh(inner):
    """The anchors embedded from scratch with the encoder as it is now."""
    with torch.no_grad():
        was = inner.encoder.training
        inner.encoder.eval()
        out = inner.embed(**inner.anchors.model_inputs(0, inner.config.num_anchors))
        inner.encoder.train(was)
    return out


def assert_anchors_fresh(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    torch.testing.assert_close(inner.anchor_embeddings, fresh(inner), rtol=0, atol=1e-6)


def logits(model, seed=7):
    with torch.no_grad():
        return model(**batch(seed=seed, labels=False)).logits


def test_plain_recipe_trains_and_saves_the_whole_head(anchor_texts, tmp_path):
    pm = get_peft_model(build(anchor_texts), LoraConfig(**RECIPE))
    extra = [n for n, p in pm.named_parameters() if p.requires_grad and "lora_" not in n]
    assert extra and all(n.startswith("base_model.model.score.modules_to_save.default.") for n in extra), extra
    head = build(anchor_texts).score  # the default (summed aligned) head
    head_params = {n for n, _ in head.named_parameters()}
    assert {"norms.0.weight", "aligned_norm.weight", "mlp.relative.0.weight", "mlp.aligned.3.bias"} <= head_params
    assert {n.split("modules_to_save.default.", 1)[1] for n in extra} == head_params  # all of it, nothing else
    wrappers = [n for n, m in pm.named_modules() if type(m).__name__ == "ModulesToSaveWrapper"]
    assert wrappers == ["base_model.model.score"]  # one wrapper: no unused nested copy of the MLP
    train(pm)
    expected = logits(pm)
    pm.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    trainable_head = {n.split("modules_to_save.default.", 1)[1] for n in extra}
    in_adapter = {k.split(".score.", 1)[1] for k in saved if ".score." in k}
    assert trainable_head == head_params and in_adapter == set(head.state_dict())  # + the aligned fit's buffers
    reloaded = PeftModel.from_pretrained(build(anchor_texts, seed=123), tmp_path / "adapter").eval()
    torch.testing.assert_close(logits(reloaded), expected, rtol=0, atol=1e-5)
    assert_anchors_fresh(reloaded)


def test_adapter_of_the_previous_layout_still_loads(anchor_texts, tmp_path):
    """apply_lora adapters saved before the rename (``head.*`` keys, modules_to_save=["head"]) keep loading."""
    pm = train(apply_lora(build(anchor_texts), ["query", "value"], r=4))
    expected = logits(pm)
    pm.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    old = {k.replace(".score.mlp.", ".head.classifier.").replace(".score.", ".head."): v for k, v in saved.items()}
    assert any(".head.norms." in k for k in old) and not any(".score." in k for k in old)
    from safetensors.torch import save_file

    save_file(old, str(tmp_path / "adapter" / "adapter_model.safetensors"))
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({**config, "modules_to_save": ["head"]}))
    reloaded = PeftModel.from_pretrained(build(anchor_texts, seed=5), tmp_path / "adapter").eval()
    torch.testing.assert_close(logits(reloaded), expected, rtol=0, atol=1e-5)


def test_anchors_reembedded_on_load_set_adapter_merge_disable(anchor_texts, tmp_path):
    base = build(anchor_texts)
    base.save_pretrained(tmp_path / "base")
    pm = train(get_peft_model(base, LoraConfig(**RECIPE)))
    pm.save_pretrained(tmp_path / "a")

    # a saved base (anchors stored as fresh), LoRA loaded onto it before any forward
    loaded = PeftModel.from_pretrained(
        BridgeForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "a"
    ).eval()
    inner = loaded.get_base_model()
    stale = inner.anchors.embeddings.clone()
    assert_anchors_fresh(loaded)
    assert not torch.allclose(inner.anchors.embeddings, stale, atol=1e-4)
    torch.testing.assert_close(logits(loaded), logits(pm), rtol=0, atol=1e-5)

    loaded.load_adapter(tmp_path / "a", adapter_name="b")
    with torch.no_grad():  # make "b" differ from "default"
        for name, param in loaded.named_parameters():
            if "lora_B.b" in name:
                param.add_(0.3)
    loaded.set_adapter("b")
    assert_anchors_fresh(loaded)
    emb_b = inner.anchors.embeddings.clone()
    loaded.set_adapter("default")
    assert_anchors_fresh(loaded)
    assert not torch.allclose(inner.anchors.embeddings, emb_b, atol=1e-4)

    with loaded.disable_adapter():  # the base encoder inside, LoRA again after
        assert_anchors_fresh(loaded)
        torch.testing.assert_close(inner.anchors.embeddings, stale, rtol=0, atol=1e-6)
    assert_anchors_fresh(loaded)

    expected = logits(loaded)
    loaded.base_model.merge_adapter()
    assert_anchors_fresh(loaded)
    torch.testing.assert_close(logits(loaded), expected, rtol=0, atol=1e-5)
    loaded.base_model.unmerge_adapter()
    assert_anchors_fresh(loaded)
    merged = loaded.merge_and_unload().eval()
    assert type(merged) is BridgeForSequenceClassification
    assert not [n for n, _ in merged.named_modules() if "lora" in n]
    assert_anchors_fresh(merged)
    torch.testing.assert_close(logits(merged), expected, rtol=0, atol=1e-5)


def test_auto_peft_model_works_offline_on_a_saved_base(anchor_texts, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = build(anchor_texts)
    base.save_pretrained(tmp_path / "base")  # a from_encoder bridge had no name: now the folder
    pm = train(get_peft_model(base, LoraConfig(**RECIPE)))
    pm.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "base")
    auto = AutoPeftModelForSequenceClassification.from_pretrained(str(tmp_path / "adapter")).eval()
    assert type(auto.get_base_model()) is BridgeForSequenceClassification
    torch.testing.assert_close(logits(auto), logits(pm), rtol=0, atol=1e-5)
    assert_anchors_fresh(auto)


def test_from_pretrained_on_an_adapter_folder_embeds_the_anchors_with_the_adapter(anchor_texts, tmp_path):
    """transformers' own peft integration: ``from_pretrained(adapter_folder)`` loads the base, then the adapter. The
    anchors saved with the base were taken as fresh for the adapted encoder (logits 3.8 off on the tiny encoder)."""
    from transformers import AutoModelForSequenceClassification

    base = build(anchor_texts)
    base.save_pretrained(tmp_path / "base")
    pm = train(get_peft_model(base, LoraConfig(**RECIPE)))
    pm.save_pretrained(tmp_path / "adapter")
    for cls in (BridgeForSequenceClassification, AutoModelForSequenceClassification):
        loaded = cls.from_pretrained(tmp_path / "adapter").eval()
        assert type(loaded) is BridgeForSequenceClassification
        assert any("lora_" in name for name, _ in loaded.named_parameters())
        torch.testing.assert_close(logits(loaded), logits(pm), rtol=0, atol=1e-5)
        assert_anchors_fresh(loaded)


def test_saved_files_keep_the_historic_key_names(anchor_texts, tmp_path):
    model = build(anchor_texts).eval()
    model.save_pretrained(tmp_path / "model")
    keys = load_file(tmp_path / "model" / "model.safetensors")
    assert "head.classifier.relative.0.weight" in keys and "head.norms.0.weight" in keys  # the summed default
    assert not [k for k in keys if k.startswith("score.")]
    back = BridgeForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    torch.testing.assert_close(logits(back), logits(model), rtol=0, atol=0)
    model.save_head(tmp_path / "head")
    head_keys = load_file(next((tmp_path / "head").glob("*.safetensors")))
    assert any(k.startswith("classifier.") for k in head_keys) and not any(k.startswith("mlp.") for k in head_keys)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_corrupted_model_weights_are_named(anchor_texts, tmp_path, cut):
    build(anchor_texts).save_pretrained(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(OSError, match="model.safetensors is truncated or corrupted"):
        BridgeForSequenceClassification.from_pretrained(tmp_path / "model")
