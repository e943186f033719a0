"""HeadConfig: one validated group of head hyper-parameters, nested in BridgeConfig as ``head``."""

from __future__ import annotations

import json

import pytest
import torch

from hf_bridges import BridgeConfig
from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead
from hf_bridges.modeling.registry import ConfigError, UnknownNameError


@pytest.mark.parametrize(
    "data, match",
    [
        ({"projections": "cosine"}, r"head\.projections: expected a list.*\['cosine'\]"),
        ({"projections": ["cosin"]}, r"head\.projections\[0\].*did you mean 'cosine'"),
        ({"aggregation": "mlp-sum"}, r"head\.aggregation.*did you mean 'mlp_sum'"),
        ({"abs_transform": "standrd"}, r"head\.abs_transform.*did you mean 'standard'"),
        ({"subspace_norm": "layer_norm"}, r"head\.subspace_norm.*did you mean 'layernorm'"),
        ({"classifier_hidden_size": True}, r"head\.classifier_hidden_size: expected an integer, got bool"),
        ({"classifier_hidden_size": 2560000}, r"head\.classifier_hidden_size: 2560000 is out of range"),
        ({"aggregation_dim": 0}, r"head\.aggregation_dim: 0 is out of range"),
        ({"aggregation_dim": 8.0}, r"head\.aggregation_dim: expected an integer"),
        ({"classifier_dropout": 1.0}, r"head\.classifier_dropout: 1.0 is out of range"),
        ({"subspace_dropout": float("nan")}, r"head\.subspace_dropout"),
        ({"subspace_dropout": "0.5"}, r"head\.subspace_dropout: expected a number"),
        ({"projections": ["cosine", "l1"], "subspace_weights": [1.0]}, r"subspace_weights: has 1 values"),
        ({"agregation": "sum"}, r"unknown head setting 'agregation' \(did you mean 'aggregation'\?\)"),
    ],
)
def test_from_dict_is_strict_and_names_the_field(data, match):
    with pytest.raises(ConfigError, match=match):
        HeadConfig.from_dict(data, where="head")


def test_unknown_names_are_unknown_name_errors():
    with pytest.raises(UnknownNameError):
        HeadConfig.from_dict({"projections": ["nope"]})


def test_round_trip_and_from_config_builds_the_head():
    config = HeadConfig.from_dict({"projections": ["cosine", "l1"], "aggregation": "sum", "classifier_hidden_size": 0})
    assert HeadConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    head = RelativeProductHead(config, num_anchors=6, num_labels=3, embedding_dim=5)  # aligned: its width
    assert head.projection_names == ["cosine", "l1"] and head.aligned_dim == config.aligned_dim == 5
    assert isinstance(head.classifier.relative, torch.nn.Linear)  # combine="sum": one linear classifier per component
    assert isinstance(head.classifier.aligned, torch.nn.Linear)
    assert head(torch.randn(4, 5), torch.randn(6, 5)).shape == (4, 3)


def test_bridge_config_nests_head_and_folds_format1_flat_keys():
    config = BridgeConfig(projections=["cosine"], aggregation_dim=8, classifier_hidden_size=16)
    assert isinstance(config.head, HeadConfig) and config.head.aggregation_dim == 8
    saved = json.loads(config.to_json_string())
    assert saved["head"]["projections"] == ["cosine"] and saved["head"]["classifier_hidden_size"] == 16
    assert "projections" not in saved and "aggregation_dim" not in saved
    reloaded = BridgeConfig.from_dict(saved)
    assert reloaded.head == config.head and reloaded.projections == ["cosine"]  # flat spelling is an alias
    reloaded.aggregation = "sum"
    assert reloaded.head.aggregation == "sum"
    with pytest.raises(ConfigError, match="both flat and in head"):
        BridgeConfig(head={"aggregation": "sum"}, aggregation="concat")
    with pytest.raises(ConfigError, match="projections: expected a list"):
        BridgeConfig(projections="cosine")


def test_every_model_field_is_declared_and_documented():
    import inspect
    from pathlib import Path

    import hf_bridges.modeling as modeling

    params = inspect.signature(BridgeConfig.__init__).parameters
    fields = (
        "features_dim",
        "encoder_class",
        "anchor_input_shape",
        "anchor_input_dtype",
        "anchor_image_shape",
        "output_shape",
        "decoder_hidden_size",
        "decoder_activation",
        "input_prefix",
    )
    for name in fields:
        assert name in params and name in BridgeConfig.__doc__, name
        assert hasattr(BridgeConfig(), name), name
    folder = Path(modeling.__file__).parent
    for path in folder.glob("*.py"):  # no undeclared field read through getattr(config, "x", default)
        text = path.read_text()
        assert 'getattr(config, "' not in text and 'getattr(self.config, "' not in text, path.name
    with pytest.raises(ConfigError, match="decoder_activation"):
        BridgeConfig(decoder_activation="relu")
    config = BridgeConfig(output_shape=(1, 4, 4), anchor_input_shape=(3,), features_dim=7)
    again = BridgeConfig.from_dict(json.loads(config.to_json_string()))
    assert again.output_shape == [1, 4, 4] and again.anchor_input_shape == [3] and again.hidden_size == 7


def test_no_head_field_shadows_a_generation_parameter():
    """BridgeConfig exposes every head field flat (``config.projections``); transformers refuses to save a config
    holding a generation parameter (``temperature``, ``top_k``, ...), so a head field must never take such a name."""
    from transformers import GenerationConfig

    generation = set(GenerationConfig._get_default_generation_params())
    assert generation and not generation & set(HeadConfig.field_names())


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("max_seq_length", "64", r"BridgeConfig\.max_seq_length must be a whole number >= 1, got str '64'"),
        ("anchor_seq_length", "8", r"BridgeConfig\.anchor_seq_length must be a whole number >= 0, got str '8'"),
        ("anchor_batch_size", 0, r"BridgeConfig\.anchor_batch_size must be a whole number >= 1, got int 0"),
        ("features_dim", "abc", r"BridgeConfig\.features_dim must be a whole number >= 1 or null, got str 'abc'"),
        ("freeze_encoder", "no", r"BridgeConfig\.freeze_encoder must be true or false, got str 'no'"),
        ("normalize_embeddings", 1, r"BridgeConfig\.normalize_embeddings must be true or false, got int 1"),
        ("output_shape", ["a"], r"BridgeConfig\.output_shape must be a list of whole numbers \(a tensor shape\)"),
        ("anchor_image_shape", "3x28x28", r"BridgeConfig\.anchor_image_shape must be a list of whole numbers"),
    ],
)
def test_a_saved_models_config_json_of_the_wrong_type_names_the_field(tmp_path, tokenizer, field, value, match):
    """``@strict`` types nothing here (the module's annotations are strings): ``"max_seq_length": "64"`` loaded and
    failed in the first forward with a raw TypeError; ``"freeze_encoder": "no"`` was read as true."""
    from helpers import make_encoder, topic_texts
    from transformers import AutoModelForSequenceClassification

    from hf_bridges import BridgeForSequenceClassification

    texts, labels = topic_texts(2, seed=1)
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=texts, anchor_labels=labels, tokenizer=tokenizer, num_labels=5
    )
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[field] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=match):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=match):
        BridgeConfig(**{field: value})


def test_a_config_json_that_does_not_fit_the_weights_is_one_named_error(tmp_path, tokenizer):
    """An edited ``num_anchors`` (or any width) raised transformers' bare "You set `ignore_mismatched_sizes` to
    False ... look at the above report!"; now one HfBridgesError (still a RuntimeError) naming config.json and the fix.
    Nothing is allocated at the edited size (the model is built on the meta device first)."""
    from helpers import make_encoder, topic_texts
    from transformers import AutoModelForSequenceClassification

    from hf_bridges import BridgeForSequenceClassification, HfBridgesError

    texts, labels = topic_texts(2, seed=1)
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=texts, anchor_labels=labels, tokenizer=tokenizer, num_labels=5
    )
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_anchors=10**9, anchors=None, anchor_labels=None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HfBridgesError, match=r"the weights do not have the shapes its config.json describes") as caught:
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert isinstance(caught.value, RuntimeError) and "ignore_mismatched_sizes=True" in str(caught.value)
