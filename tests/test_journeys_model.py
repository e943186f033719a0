"""The model journeys of issue 19, as a user walks them: reload (and train) a frozen bridge, load it in half
precision, checkpoint and compile it, ask for a named head. Tiny random encoders; real Trainer, peft and HTTP hub."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import Dataset
from helpers import make_encoder, make_tokenizer, topic_texts
from hub_server import TOKEN, hub_fixture
from peft import AutoPeftModelForSequenceClassification, LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from hf_bridges import BridgeForSequenceClassification, ModuleBridgeForClassification
from hf_bridges.building import methods as head_config
from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.registry import ConfigError, HfBridgesError
from hf_bridges.presets import list_presets, resolve_preset
from hf_bridges.stitching.config import load_config
from hf_bridges.stitching.training import build_head

hub = pytest.fixture(hub_fixture)
TEXTS, LABELS = topic_texts(2, seed=5)
# docs/method.md#precision: the head computes in float32; logits of a half-precision load stay this close
TOLERANCE = {torch.bfloat16: 5e-2, torch.float16: 1e-2}


def build(anchor_texts, **kwargs):
    torch.manual_seed(0)
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=make_tokenizer(), num_labels=5, **kwargs
    )


def batch(texts=TEXTS):
    return make_tokenizer()(texts, padding=True, return_tensors="pt")


def habits(model) -> tuple[int, dict[str, bool]]:
    """Trainable parameter count, and the train/eval mode of every submodule after ``model.train()``."""
    model.train()
    modes = {name: module.training for name, module in model.named_modules()}
    model.eval()
    return model.num_parameters(only_trainable=True), modes


def test_reloaded_bridge_keeps_its_encoder_frozen(anchor_texts, tmp_path, hub):
    model = build(anchor_texts)
    expected = habits(model)
    assert expected[0] < sum(p.numel() for p in model.parameters()) // 2  # the head only
    model.save_pretrained(tmp_path / "bridge")
    for load in (AutoModelForSequenceClassification.from_pretrained, BridgeForSequenceClassification.from_pretrained):
        reloaded = load(tmp_path / "bridge")
        assert habits(reloaded) == expected, load
        assert reloaded.config.freeze_encoder and not reloaded.encoder.training
    model.push_to_hub("alice/frozen-bridge", token=TOKEN)
    assert habits(AutoModelForSequenceClassification.from_pretrained("alice/frozen-bridge", token=TOKEN)) == expected

    # LoRA: peft decides what trains; a reloaded adapter on a reloaded base trains the same parameters
    base = build(anchor_texts)
    base.save_pretrained(tmp_path / "base")  # the adapter records this folder as its base
    lora = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query"]))
    lora.save_pretrained(tmp_path / "adapter")
    auto = AutoPeftModelForSequenceClassification.from_pretrained(str(tmp_path / "adapter"), is_trainable=True)
    assert habits(auto) == habits(lora)

    # a Trainer run on the reloaded bridge trains the head and leaves the encoder's weights alone
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bridge")
    encoder = {k: v.clone() for k, v in reloaded.encoder.state_dict().items()}
    head = {k: v.clone() for k, v in reloaded.head.state_dict().items()}
    enc = make_tokenizer()(TEXTS)
    data = Dataset.from_dict({**enc, "labels": LABELS})
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    Trainer(model=reloaded, args=args, train_dataset=data, processing_class=make_tokenizer()).train()
    assert all(torch.equal(v, reloaded.encoder.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, reloaded.head.state_dict()[k]) for k, v in head.items())


def _dtypes(model) -> dict[str, set]:
    floats = [(n, t) for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_floating_point()]
    out: dict[str, set] = {}
    for name, tensor in floats:
        out.setdefault(name.split(".")[0], set()).add(tensor.dtype)
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_the_usual_way(anchor_texts, tiny_encoder_dir, tmp_path, dtype):
    model = build(anchor_texts).eval()
    with torch.no_grad():
        reference = model(**batch()).logits
    model.save_pretrained(tmp_path / "bridge")
    model.save_head(tmp_path / "head")
    atol = TOLERANCE[dtype]
    for load in (AutoModelForSequenceClassification.from_pretrained, BridgeForSequenceClassification.from_pretrained):
        half = load(tmp_path / "bridge", dtype=dtype).eval()
        assert _dtypes(half) == {"encoder": {dtype}, "score": {torch.float32}, "anchors": {torch.float32}}
        with torch.no_grad():
            logits = half(**batch()).logits
        assert logits.dtype == torch.float32
        torch.testing.assert_close(logits, reference, atol=atol, rtol=0)
        assert not half.encoder.training and half.num_parameters(only_trainable=True) == habits(model)[0]
    on_cpu = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bridge", device_map="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(on_cpu(**batch()).logits, reference, atol=1e-6, rtol=0)
    # an encoder loaded in half precision, new head or attached head
    new = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir, anchors=anchor_texts, num_labels=5, encoder_kwargs={"dtype": dtype}
    ).eval()
    attached = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir, head=tmp_path / "head", encoder_kwargs={"dtype": dtype}
    ).eval()
    for bridge in (new, attached):
        assert _dtypes(bridge)["encoder"] == {dtype} and _dtypes(bridge)["score"] == {torch.float32}
        with torch.no_grad():
            assert bridge(**batch()).logits.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(attached(**batch()).logits, reference, atol=atol, rtol=0)
        # features of any float dtype
        features = model.embed(**batch())
        for kind in (dtype, torch.float64):
            logits = model(features=features.to(kind)).logits
            assert logits.dtype == torch.float32
            torch.testing.assert_close(logits, reference, atol=atol, rtol=0)


def test_activation_checkpointing_and_compile(anchor_texts):
    model = build(anchor_texts, classifier_dropout=0.0)
    model.unfreeze_encoder()
    inputs = {**batch(), "labels": torch.tensor(LABELS)}

    def grads():
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout masks in both runs
        model.train()(**inputs).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renamed it activation_checkpointing_enable
        model.gradient_checkpointing_enable()
    layers = [m for m in model.encoder.modules() if hasattr(m, "gradient_checkpointing")]
    assert model.supports_gradient_checkpointing and layers and all(m.gradient_checkpointing for m in layers)
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and any(n.startswith("encoder.") for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-4)
    module_bridge = ModuleBridgeForClassification.from_module(torch.nn.Linear(4, 3), torch.randn(6, 4), num_labels=2)
    with pytest.raises(HfBridgesError, match="does not support"):
        module_bridge.activation_checkpointing_enable()

    # torch.compile: the head (anchor freshness, finite checks, subspace weights, dropout, loss) in one graph
    frozen = build(anchor_texts).eval()
    features = frozen.embed(**batch())
    with torch.no_grad():
        expected = frozen(features=features).logits
        torch.testing.assert_close(
            torch.compile(frozen, fullgraph=True, backend="eager")(features=features).logits, expected
        )
    frozen.config.subspace_weights = [1.0, 0.0]  # as an attach may set them
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(frozen, fullgraph=True, backend="eager")(features=features)
    frozen.config.subspace_weights = None
    torch._dynamo.reset()
    frozen.train()
    explained = torch._dynamo.explain(lambda **kw: frozen(**kw).loss)(features=features, labels=inputs["labels"])
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]


def _module_shapes(head) -> dict[str, tuple]:
    return {name: tuple(t.shape) for name, t in head.state_dict().items()}


def test_named_heads_are_the_benchmark_heads(anchor_texts, tmp_path):
    # every shipped stitch row named after a method builds exactly that method's head
    checked = set()
    for preset in list_presets("stitch"):
        config = load_config(resolve_preset(preset))
        shared = dict(config.head)
        for row in config.methods:
            if row.name in head_config.METHODS and row.kind in ("relative", "default"):
                assert row.head_config(config.head) == HeadConfig.from_method(row.name, **shared), (preset, row.name)
                checked.add(row.name)
    assert {"cosine", "cosine+std", "product-mlp_sum", "product-concat", "default"} <= checked

    # the paper's head, exactly: four raw relative subspaces, LayerNorm each, MLP+Sum with k->k maps, nothing else
    paper = build(anchor_texts, method="paper")
    head = paper.config.head
    assert head == HeadConfig.from_method("paper")
    assert (head.projections, head.aggregation, head.aggregation_dim) == (
        ["cosine", "euclidean", "l1", "linf"],
        "mlp_sum",
        None,
    )
    assert (head.aligned, head.abs_transform, head.combine, head.component_dropout) == (False, "none", "concat", 0.0)
    assert not hasattr(paper.head, "aligned_norm") and paper.head.output_dim == len(anchor_texts)
    paper.save_pretrained(tmp_path / "paper")
    again = BridgeForSequenceClassification.from_pretrained(tmp_path / "paper")
    assert again.config.head_method == "paper" and again.config.head == head

    # the API's head of a benchmark name is the benchmark's head: same config, same modules
    config = load_config(resolve_preset("stitch-bbc"))
    spec = next(m for m in config.methods if m.name == "product-mlp_sum")
    bench = build_head(spec, config.head, len(anchor_texts), 32, 5)
    api = build(anchor_texts, method="product-mlp_sum", classifier_dropout=0.1)
    assert api.config.head == spec.head_config(config.head)
    assert _module_shapes(api.head) == _module_shapes(bench)

    # fields next to a name apply on top; a partial head spelled field by field warns and says what it builds
    tweaked = build(anchor_texts, method="paper", classifier_dropout=0.0, aggregation_dim=8)
    assert tweaked.config.head == HeadConfig.from_method("paper", classifier_dropout=0.0, aggregation_dim=8)
    with pytest.warns(UserWarning, match="method="):
        partial = build(anchor_texts, projections=["cosine", "euclidean", "l1", "linf"], aggregation="mlp_sum")
    assert partial.config.head.aligned and partial.config.head_method is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(anchor_texts, projections=["cosine", "l1"], head_config={})  # the default head + these, on purpose
    with pytest.raises(ConfigError, match="did you mean 'paper'"):
        build(anchor_texts, method="papr")
    # a module bridge names its head the same way (its own method= is the module's method to call)
    module = ModuleBridgeForClassification.from_module(
        torch.nn.Linear(4, 3), torch.randn(6, 4), num_labels=2, head_config="paper"
    )
    assert module.config.head == HeadConfig.from_method("paper") and module.config.head_method == "paper"
