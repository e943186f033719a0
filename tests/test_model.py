"""The bridge as a transformers model: from_encoder, Auto classes, save/load, remote code, frozen encoder, anchors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import topic_texts
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from hf_bridges import BridgeConfig, BridgeForSequenceClassification, BridgeModel


@pytest.fixture()
def model(tiny_encoder_dir, anchor_texts):
    return BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir, anchors=anchor_texts, num_labels=5, head_config={"aggregation": "mlp_sum"}
    ).eval()


@pytest.fixture()
def batch(tokenizer):
    texts, labels = topic_texts(2, seed=7)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    encoded["labels"] = torch.tensor(labels)
    return encoded


def test_forward_returns_loss_and_logits(model, batch):
    out = model(**batch)
    assert out.logits.shape == (10, 5)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.relative_representation is None  # only on request, so Trainer's predictions stay plain logits
    full = model(**batch, output_representations=True)
    # the default head: r(z) = [relative (mlp_sum, 20 anchors), aligned component (the encoder's 32 dims)]
    assert full.relative_representation.shape == (10, 20 + 32) and full.embeddings.shape == (10, 32)


def test_bridge_model_returns_product_representation(tiny_encoder_dir, anchor_texts, batch):
    base = BridgeModel.from_encoder(
        tiny_encoder_dir,
        anchors=anchor_texts,
        aggregation="concat",
        projections=["cosine", "euclidean", "l1", "linf"],
        head_config={"aligned": False},
    ).eval()  # the 4-subspace product
    out = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_subspaces=True)
    assert out.relative_representation.shape == (10, 4 * 20)
    assert out.subspaces.shape == (10, 4, 20)


def test_config_records_encoder_and_anchors(model, tiny_encoder_dir, anchor_texts):
    cfg = model.config
    assert cfg.encoder.model_type == "bert" and cfg.hidden_size == 32
    assert cfg.encoder_name_or_path == tiny_encoder_dir
    assert cfg.anchors == anchor_texts and cfg.num_anchors == 20
    assert model.anchors.embeddings.shape == (20, 32) and bool(model.anchors.is_fresh)


@pytest.mark.parametrize("auto_class", [AutoModelForSequenceClassification, BridgeForSequenceClassification])
def test_save_and_reload_identical_logits(model, batch, tmp_path, auto_class):
    expected = model(**batch).logits
    model.save_pretrained(tmp_path)
    again = auto_class.from_pretrained(tmp_path).eval()
    assert isinstance(again, BridgeForSequenceClassification)
    torch.testing.assert_close(again(**batch).logits, expected, atol=1e-6, rtol=0)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), BridgeConfig)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, BridgeModel)
    assert (tmp_path / "tokenizer.json").exists()


def test_reload_does_not_reembed_anchors(model, batch, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path)
    again = BridgeForSequenceClassification.from_pretrained(tmp_path).eval()
    calls = []
    monkeypatch.setattr(again, "refresh_anchors", lambda: calls.append(1))
    again(**batch)
    again(**batch)
    assert calls == []


def test_anchors_embedded_once_not_per_batch(model, batch):
    seen = []
    hook = model.encoder.register_forward_hook(lambda m, args, kwargs_out: seen.append(1))
    try:
        for _ in range(3):
            model(**batch)
    finally:
        hook.remove()
    assert len(seen) == 3  # one encoder call per batch, none for anchors


def test_anchors_reembedded_when_encoder_weights_change(model, batch):
    before = model.anchor_embeddings.clone()
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight.mul_(1.5)  # an in-place change, like an optimizer step
    after = model.anchor_embeddings
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, model.refresh_anchors())


def test_frozen_encoder_gets_no_gradients(model, batch):
    model.train()
    model(**batch).loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("score.") for n in trainable)  # the head is registered as `score`


@pytest.mark.parametrize(
    "make_optimizer",
    [lambda params: torch.optim.SGD(params, lr=0.5), lambda params: torch.optim.AdamW(params, lr=0.05, fused=True)],
    ids=["sgd", "fused-adamw"],  # a fused step leaves the parameters' _version as it was (Trainer's default)
)
def test_unfrozen_encoder_trains_and_refreshes_anchors(model, batch, make_optimizer):
    model.unfreeze_encoder()
    model.train()
    optimizer = make_optimizer(list(model.parameters()))
    before = model.anchor_embeddings.clone()
    model(**batch).loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad is not None
    optimizer.step()
    model(**batch)  # the next forward sees the new encoder and re-embeds the anchors
    assert not torch.allclose(before, model.anchors.embeddings)


def test_cls_pooling_differs_from_mean(tiny_encoder_dir, anchor_texts, batch):
    mean = BridgeModel.from_encoder(tiny_encoder_dir, anchors=anchor_texts).eval()
    cls = BridgeModel.from_encoder(tiny_encoder_dir, anchors=anchor_texts, pooling="cls").eval()
    assert not torch.allclose(mean.anchors.embeddings, cls.anchors.embeddings)
    expected = mean.encoder(input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1])
    cls_expected = expected.last_hidden_state[:, 0]
    torch.testing.assert_close(cls.embed(batch["input_ids"][:1], batch["attention_mask"][:1]), cls_expected)


@pytest.mark.subprocess
def test_remote_code_loads_without_the_package(model, batch, tmp_path):
    """A fresh interpreter that cannot import hf_bridges loads the model through trust_remote_code, saves it again
    and reloads it (same logits); what needs the package (``encode``) raises an ImportError naming it."""
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "inputs.json").write_text(json.dumps({k: v.tolist() for k, v in batch.items() if k != "labels"}))
    expected = model(**batch).logits
    script = textwrap.dedent(
        f"""
        import json, os, sys
        repo = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r}
        sys.path = [p for p in sys.path if p and os.path.abspath(p) != repo]
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]  # pip install -e finders
        try:
            import hf_bridges
            raise SystemExit("hf_bridges is importable: the test would prove nothing")
        except ImportError:
            pass
        import torch
        from transformers import AutoModelForSequenceClassification
        m = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True).eval()
        inputs = {{k: torch.tensor(v) for k, v in json.load(open({str(tmp_path / "inputs.json")!r})).items()}}
        try:  # what needs the package says so (the model classes reach it lazily)
            m.encode(["a text"])
            raise SystemExit("encode ran without hf_bridges")
        except ImportError as error:
            assert "pip install hf-bridges" in str(error), error
        m.save_pretrained({str(tmp_path / "again")!r})  # plain transformers saving without the package
        again = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "again")!r}, trust_remote_code=True)
        assert torch.equal(again.eval()(**inputs).logits, m(**inputs).logits)
        print(type(m).__module__)
        print(json.dumps(m(**inputs).logits.tolist()))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # fresh modules cache
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    module, logits = result.stdout.strip().splitlines()[-2:]
    assert module.startswith("transformers_modules")
    torch.testing.assert_close(torch.tensor(json.loads(logits)), expected, atol=1e-6, rtol=0)


def test_frozen_encoder_stays_in_eval_mode_while_training(model, batch):
    model.train()
    assert model.head.training and not model.encoder.training  # no encoder dropout on a frozen encoder
    features = lambda: model(**batch, output_representations=True).embeddings
    torch.testing.assert_close(features(), features())  # deterministic features (the head's dropout is separate)
    model.unfreeze_encoder()
    model.train()
    assert model.encoder.training


def test_one_model_contract_and_timm_style_classifier(tiny_encoder_dir, anchor_texts):
    from hf_bridges import BridgePreTrainedModel, ModuleBridgeForClassification

    for cls in (BridgeForSequenceClassification, ModuleBridgeForClassification):
        for name in ("embed", "refresh_anchors", "set_anchor_embeddings", "forward_features", "get_classifier"):
            assert getattr(cls, name) is getattr(BridgePreTrainedModel, name), (cls, name)
    model = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=3).eval()
    assert model.get_classifier() is model.head.classifier
    batch = model.tokenize(["a text", "another text"])
    _features, representation = model.forward_features(**batch)
    torch.testing.assert_close(model.forward_head(representation), model(**batch).logits)
    model.reset_classifier(7)
    assert model.config.num_labels == 7 and model(**batch).logits.shape == (2, 7)
    with pytest.raises(ValueError, match="num_labels must be a positive integer"):
        model.reset_classifier(0)
