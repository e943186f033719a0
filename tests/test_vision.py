"""BridgeForImageClassification on tiny random vision encoders (MobileNetV2, ViT) built from configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import make_encoder
from PIL import Image
from safetensors import safe_open
from transformers import (
    AutoModelForImageClassification,
    MobileNetV2Config,
    MobileNetV2Model,
    ViTConfig,
    ViTModel,
)
from transformers.models.mobilenet_v2.image_processing_pil_mobilenet_v2 import MobileNetV2ImageProcessorPil
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from hf_bridges import BridgeForImageClassification, BridgeForSequenceClassification
from hf_bridges.building.vision import to_uint8_images

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_mobilenet(seed: int = 0) -> MobileNetV2Model:
    """Kaiming-initialised convolutions: with transformers' default init (std 0.02) the 17 random blocks shrink every
    image to ~1e-25 (degenerate anchors, every embedding the same), so the tests would not test anything."""
    torch.manual_seed(seed)
    model = MobileNetV2Model(MobileNetV2Config(depth_multiplier=0.35, image_size=32)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    return model


def mobilenet_processor() -> MobileNetV2ImageProcessorPil:
    return MobileNetV2ImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def tiny_vit(seed: int = 0) -> ViTModel:
    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    return ViTModel(config).eval()


def vit_processor() -> ViTImageProcessorPil:
    return ViTImageProcessorPil(size={"height": 32, "width": 32})


def gray_images(n: int, seed: int = 0) -> torch.Tensor:
    """Fashion-MNIST-like (n, 1, 28, 28) uint8 images."""
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture(scope="module")
def bridge():
    return BridgeForImageClassification.from_encoder(
        tiny_mobilenet(), anchors=gray_images(10), image_processor=mobilenet_processor(), num_labels=3
    ).eval()


def test_anchors_are_stored_as_uint8_images(bridge):
    assert bridge.anchors.pixels.dtype == torch.uint8 and bridge.anchors.pixels.shape == (10, 1, 28, 28)
    assert torch.equal(bridge.anchors.pixels, gray_images(10))
    assert bridge.config.modality == "image" and bridge.config.anchors is None
    assert bridge.config.pooling == "pooler" and bridge.config.features_dim == 1280
    # anchor embeddings are the encoder's pooled outputs of the processed anchor images
    pixel_values = bridge.preprocess(gray_images(10))
    assert pixel_values.shape == (10, 3, 32, 32)
    expected = bridge.encoder(pixel_values=pixel_values).pooler_output
    torch.testing.assert_close(bridge.anchor_embeddings, expected)


def test_forward_loss_and_trainer_inputs(bridge):
    pixel_values = bridge.preprocess(gray_images(4, seed=1))
    out = bridge(pixel_values=pixel_values, labels=torch.tensor([0, 1, 2, 0]))
    assert out.logits.shape == (4, 3) and torch.isfinite(out.loss)
    assert bridge.main_input_name == "pixel_values"


def test_vit_mean_pooling_over_patch_tokens():
    vit = tiny_vit()
    bridge = BridgeForImageClassification.from_encoder(
        vit, anchors=gray_images(6), image_processor=vit_processor(), num_labels=2, pooling="mean"
    ).eval()
    pixel_values = bridge.preprocess(gray_images(3, seed=2))
    tokens = vit(pixel_values=pixel_values).last_hidden_state
    torch.testing.assert_close(
        bridge(pixel_values=pixel_values, output_representations=True).embeddings, tokens.mean(dim=1)
    )
    assert bridge.config.features_dim == 32


def test_save_load_through_auto_class(bridge, tmp_path):
    bridge.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    auto_map = config["auto_map"]
    assert auto_map["AutoModelForImageClassification"] == "modeling_bridge.BridgeForImageClassification"
    assert (tmp_path / "modeling_bridge.py").is_file() and (tmp_path / "preprocessor_config.json").is_file()
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert f.get_tensor("anchors.pixels").dtype == torch.uint8
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, BridgeForImageClassification) and loaded.image_processor is not None
    pixel_values = bridge.preprocess(gray_images(4, seed=3))
    torch.testing.assert_close(loaded(pixel_values=pixel_values).logits, bridge(pixel_values=pixel_values).logits)
    before = loaded.anchor_embeddings.clone()
    torch.testing.assert_close(loaded.refresh_anchors(), before)  # the saved processor re-embeds identically


@pytest.mark.subprocess
def test_remote_code_image_model_loads_without_the_package(bridge, tmp_path):
    bridge.save_pretrained(tmp_path / "m")
    pixel_values = bridge.preprocess(gray_images(2, seed=4))
    torch.save(pixel_values, tmp_path / "pv.pt")
    expected = bridge(pixel_values=pixel_values).logits
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path = [p for p in sys.path if p and os.path.abspath(p) != {repo!r}]
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
        try:
            import hf_bridges
            raise SystemExit("hf_bridges is importable: the test would prove nothing")
        except ImportError:
            pass
        import torch
        from transformers import AutoModelForImageClassification
        m = AutoModelForImageClassification.from_pretrained({str(tmp_path / "m")!r}, trust_remote_code=True).eval()
        print(type(m).__name__)
        print(json.dumps(m(pixel_values=torch.load({str(tmp_path / "pv.pt")!r})).logits.tolist()))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name, logits = done.stdout.strip().splitlines()[-2:]
    assert name == "BridgeForImageClassification"
    torch.testing.assert_close(torch.tensor(json.loads(logits)), expected, atol=1e-5, rtol=1e-4)


def test_text_and_image_heads_refuse_the_wrong_encoder():
    with pytest.raises(ValueError, match="not an image encoder"):
        BridgeForImageClassification.from_encoder(make_encoder(), anchors=gray_images(4), image_processor=object())
    with pytest.raises(ValueError, match="BridgeForImageClassification"):
        BridgeForSequenceClassification.from_encoder(tiny_mobilenet(), anchors=["a b", "c d"], tokenizer=object())


def test_wrong_channels_and_sizes(bridge):
    with pytest.raises(ValueError, match="2 channels, the encoder takes 3"):
        bridge(pixel_values=torch.randn(2, 2, 32, 32))
    with pytest.raises(ValueError, match=r"1 \(grayscale\) or 3 \(RGB\) channels, got \[4\]"):
        bridge.preprocess(np.zeros((2, 28, 28, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="not input_ids"):
        bridge(input_ids=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        bridge(pixel_values=torch.randn(3, 32, 32))
    vit = BridgeForImageClassification.from_encoder(
        tiny_vit(), anchors=gray_images(4), image_processor=vit_processor(), num_labels=2
    )
    with pytest.raises(ValueError, match=r"failed on pixel_values of shape \(2, 3, 48, 48\).*preprocess"):
        vit(pixel_values=torch.randn(2, 3, 48, 48))
    with pytest.raises(ValueError, match="different sizes"):
        to_uint8_images([np.zeros((28, 28), np.uint8), np.zeros((30, 30), np.uint8)])
    with pytest.raises(ValueError, match="0-255"):
        to_uint8_images(np.full((1, 4, 4), 300, dtype=np.int64))


def test_image_inputs_are_normalised_to_uint8():
    pil = [Image.fromarray(np.full((20, 20, 3), 200, np.uint8)), Image.fromarray(np.full((28, 28), 10, np.uint8))]
    out = to_uint8_images(pil, size=(24, 24))
    assert out.shape == (2, 3, 24, 24) and out.dtype == torch.uint8  # grayscale joined RGB; sizes unified
    floats = to_uint8_images(torch.full((2, 3, 8, 8), 0.5))
    assert floats.dtype == torch.uint8 and int(floats[0, 0, 0, 0]) == 128


def test_text_config_refused_by_the_image_class(tiny_encoder_dir, anchor_texts):
    text = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=2)
    with pytest.raises(ValueError, match="not an image one"):
        BridgeForImageClassification(text.config)


def test_image_head_saves_png_anchors_and_attaches_to_another_encoder(bridge, tmp_path):
    """Head-only format: anchors travel as PNG bytes in Parquet; a different MobileNetV2 embeds them on attach."""
    import pyarrow.parquet as pq

    bridge.save_head(tmp_path / "head")
    table = pq.read_table(tmp_path / "head" / "anchors.parquet")
    first = table.column("anchor").to_pylist()[0]
    assert isinstance(first, bytes) and first.startswith(b"\x89PNG")
    same = BridgeForImageClassification.from_encoder(
        tiny_mobilenet(seed=0), head=tmp_path / "head", image_processor=mobilenet_processor()
    )
    other = BridgeForImageClassification.from_encoder(
        tiny_mobilenet(seed=1), head=tmp_path / "head", image_processor=mobilenet_processor()
    ).eval()
    # the training encoder itself matches; another random CNN keeps the input geometry only in part
    assert same.stitch_report.score > 0.999
    assert other.stitch_report.score < same.stitch_report.score - 0.1
    assert torch.equal(other.anchors.pixels, bridge.anchors.pixels)  # lossless round trip
    # the trained weights travel unchanged; the buffers hold what the attach fitted (the aligned map)
    torch.testing.assert_close(dict(other.head.named_parameters()), dict(bridge.head.named_parameters()))
    pixel_values = other.preprocess(gray_images(3, seed=5))
    assert other(pixel_values=pixel_values).logits.shape == (3, 3)
    with pytest.raises(ValueError, match="image head"):
        BridgeForSequenceClassification.from_encoder(make_encoder(), head=tmp_path / "head", tokenizer=object())


def test_text_head_refuses_an_image_encoder(tiny_encoder_dir, anchor_texts, tmp_path):
    text = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=2)
    text.save_head(tmp_path / "text-head")
    with pytest.raises(ValueError, match="text head"):
        BridgeForImageClassification.from_encoder(
            tiny_mobilenet(), head=tmp_path / "text-head", image_processor=mobilenet_processor()
        )


def test_one_model_contract_image_bridge_only_declares(bridge):
    """The image bridge no longer derives from the text model nor replaces its anchor store: it declares its store,
    inputs and encoder call, and shares embed / refresh_anchors / forward_features with every bridge."""
    from hf_bridges import BridgeForSequenceClassification, BridgePreTrainedModel
    from hf_bridges.modeling.modeling_bridge import ImageAnchorStore

    assert not issubclass(BridgeForImageClassification, BridgeForSequenceClassification)
    for name in ("embed", "refresh_anchors", "set_anchor_embeddings", "forward_features", "forward_head"):
        assert getattr(BridgeForImageClassification, name) is getattr(BridgePreTrainedModel, name), name
    assert type(bridge.anchors) is ImageAnchorStore and not hasattr(bridge.anchors, "input_ids")
    before = bridge.anchor_embeddings.clone()
    bridge.refresh_anchors()
    torch.testing.assert_close(bridge.anchor_embeddings, before)
    pixels = bridge.preprocess(gray_images(3))
    _features, representation = bridge.forward_features(pixel_values=pixels)
    torch.testing.assert_close(bridge.forward_head(representation), bridge(pixel_values=pixels).logits)


def test_alignment_images_are_stored_after_the_anchors_and_refused_by_an_attach(tmp_path):
    bridge = BridgeForImageClassification.from_encoder(
        tiny_mobilenet(),
        anchors=gray_images(4),
        alignment_inputs=gray_images(6, seed=3),
        image_processor=mobilenet_processor(),
        num_labels=3,
    ).eval()
    assert bridge.config.num_anchors == 10 and bridge.config.head.relative_anchors == 4
    assert torch.equal(bridge.anchors.pixels, torch.cat([gray_images(4), gray_images(6, seed=3)]))
    pixel_values = bridge.preprocess(gray_images(2, seed=1))
    assert bridge(pixel_values=pixel_values).logits.shape == (2, 3)
    bridge.save_head(tmp_path / "head")
    with pytest.raises(ValueError, match="a trained head brings its anchors"):
        BridgeForImageClassification.from_encoder(
            tiny_mobilenet(1), head=tmp_path / "head", alignment_inputs=gray_images(2)
        )
    stitched = BridgeForImageClassification.from_encoder(
        tiny_mobilenet(1), head=tmp_path / "head", image_processor=mobilenet_processor()
    )
    assert stitched.config.head.alignment["pairs"] == 10 and stitched.head.relative_anchors == 4
