"""Building an image bridge: ``BridgeForImageClassification.from_encoder(encoder, anchors=images)`` lands here.

The anchor images are stored as ``uint8`` (k, C, H, W) at their native size when they share one (else resized once
to the processor's input size), not as processed ``pixel_values``: processed float pixels of 1,280 anchors at 224 px
take ~770 MB and belong to one encoder's processor, while raw ``uint8`` is 4x smaller at the same size, exact, loads
with no decoding code (safetensors), and any encoder's processor runs on it when a head moves to another encoder.
Head-only files store the same images as PNG bytes in Parquet (``heads.format.anchor_png_bytes``).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedModel

from ..modeling.configuration_bridge import BridgeConfig
from ..modeling.head import get_pooling
from ..modeling.registry import InputError
from .arguments import check_config_kwargs, given, resolve_head, warn_degenerate_anchors, with_alignment
from .loading import load_encoder, load_image_processor


def build_bridge(
    cls: type,
    encoder: str | PreTrainedModel,
    anchors: Any = None,
    *,
    head: Any = None,
    tokenizer: Any = None,
    image_processor: Any = None,
    revision: str | None = None,
    anchor_labels: Sequence[int] | None = None,
    pooling: str | None = None,
    anchor_image_size: Sequence[int] | None = None,
    projections: Sequence[str] | None = None,
    aggregation: str | None = None,
    head_config: Any = None,
    method: str | None = None,
    encoder_kwargs: dict | None = None,
    embed_anchors: bool = True,
    alignment_inputs: Any = None,
    **config_kwargs: Any,
) -> Any:
    """Wrap a vision encoder (Hub id, folder or model) and embed the anchor images with it.

    ``pooling``: ``"pooler"`` (``pooler_output``) or ``"mean"`` over spatial / patch tokens; by default
    ``pooler`` when the encoder returns one. Extra keyword arguments go to :class:`BridgeConfig`.
    ``head=`` (a folder or Hub repo written by ``save_head``) attaches a trained head instead: its PNG anchor
    images are embedded by this encoder (see ``hf_bridges.heads.attach.attach_head``). ``alignment_inputs``:
    more images (no labels) stored after the anchors that only fit the aligned map at attach time. ``method``:
    a named head, exactly (``"paper"``, ``"cosine+std"``... see ``HeadConfig.from_method``).
    """
    if head is not None:
        if anchors is not None or alignment_inputs is not None or method is not None:
            raise InputError("pass either anchors=... (a new head) or head=... (a trained head brings its anchors)")
        from ..heads.attach import attach_head

        return attach_head(
            cls,
            encoder,
            head,
            revision=revision,
            encoder_kwargs=encoder_kwargs,
            image_processor=image_processor,
            **config_kwargs,
        )
    check_config_kwargs(config_kwargs, "from_encoder", ("head_config", "method"))
    head_config, projections, aggregation = resolve_head(
        "from_encoder", method, head_config, projections, aggregation, config_kwargs
    )
    if tokenizer is not None:
        raise InputError("an image bridge takes image_processor=..., not a tokenizer")
    modality = config_kwargs.pop("modality", "image")
    if modality != "image":
        raise InputError(f"BridgeForImageClassification builds image bridges, got modality={modality!r}")
    if anchors is None:
        raise InputError("pass anchors=... (images) or head=... (a trained head)")
    if alignment_inputs is not None:  # as one list of images: the anchors first
        anchors, anchor_labels, head_config = with_alignment(
            list(anchors), anchor_labels, head_config, list(alignment_inputs)
        )
    model = load_encoder(encoder, revision, **(encoder_kwargs or {}))
    if getattr(model, "main_input_name", None) != "pixel_values":
        raise InputError(
            f"{type(model).__name__} is not an image encoder (it takes {model.main_input_name!r}); use "
            "BridgeForSequenceClassification for text encoders"
        )
    name = encoder if isinstance(encoder, str) else getattr(model, "name_or_path", None) or None
    if image_processor is None:
        if not name:
            raise InputError("the encoder was passed as a model without name_or_path: pass image_processor=...")
        image_processor = load_image_processor(name, revision)
    pixels = to_uint8_images(
        anchors, size=anchor_image_size or processor_size(image_processor), force_size=anchor_image_size is not None
    )
    if pixels.shape[0] < 2:
        raise InputError(f"a bridge needs at least 2 anchor images, got {pixels.shape[0]}")
    probe = cls._process(image_processor, _arrays(pixels[:2]), model.config.num_channels)
    with torch.no_grad():
        outputs = model.eval()(pixel_values=probe, return_dict=True)
    if pooling is None:
        pooling = "pooler" if getattr(outputs, "pooler_output", None) is not None else "mean"
    width = get_pooling(pooling)(outputs, None).shape[1]
    config = BridgeConfig(
        encoder=model.config.to_dict(),
        encoder_name_or_path=name,
        encoder_revision=revision,
        modality="image",
        pooling=pooling,
        num_anchors=int(pixels.shape[0]),
        anchor_image_shape=list(pixels.shape[1:]),
        features_dim=int(width),
        anchor_labels=anchor_labels,
        head=head_config,
        **given(projections=projections, aggregation=aggregation),
        **config_kwargs,
    )
    bridge = cls(config, encoder=model)
    bridge.image_processor = image_processor
    bridge.anchors.pixels.copy_(pixels)
    if embed_anchors:
        warn_degenerate_anchors(list(pixels), bridge.refresh_anchors())
    return bridge


def _one_image(image: Any) -> np.ndarray:
    """One image -> HWC array (PIL and numpy are HWC/HW; a torch tensor is CHW/HW, the torch convention)."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image = np.asarray(image)
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InputError(f"an image must be (H, W), (H, W, C) or a CHW tensor, got shape {array.shape}")
    return array


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"images must be numeric (uint8 0-255 or float 0-1), got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.integer):  # integers are 0-255 pixel values
        if array.size and (array.min() < 0 or array.max() > 255):
            raise InputError(f"integer images must be in 0-255, got values from {array.min()} to {array.max()}")
        return array.astype(np.uint8)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError("images contain NaN or inf")
    if array.size and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def image_arrays(images: Any, decode: Callable[[Any], Any] | None = None) -> list[np.ndarray]:
    """Images (a batch tensor N,C,H,W / N,H,W, an array N,H,W,C / N,H,W, or a list of PIL images, arrays or CHW
    tensors) -> HWC ``uint8`` arrays; grayscale next to RGB becomes RGB. ``decode``: applied to each list item
    first (the building layer's PNG bytes)."""
    if isinstance(images, torch.Tensor) and images.dim() in (3, 4):
        items = list(images.detach().cpu())
    elif (isinstance(images, np.ndarray) and images.ndim in (3, 4)) or isinstance(images, (list, tuple)):
        items = list(images)
    else:
        raise InputError(
            f"images must be a batch tensor (N, C, H, W), an array (N, H, W[, C]) or a list of images, got "
            f"{type(images).__name__}" + (f" of shape {tuple(images.shape)}" if hasattr(images, "shape") else "")
        )
    if not items:
        raise InputError("no images given")
    arrays = [_as_uint8(_one_image(decode(item) if decode else item)) for item in items]
    channels = {a.shape[2] for a in arrays}
    if not channels <= {1, 3}:
        raise InputError(f"images must have 1 (grayscale) or 3 (RGB) channels, got {sorted(channels)}")
    if channels == {1, 3}:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    return arrays


def processor_size(processor: Any) -> tuple[int, int] | None:
    """The (H, W) an image processor feeds its model, when it says so."""
    for attr in ("crop_size", "size"):
        size = getattr(processor, attr, None)
        if isinstance(size, int):
            return size, size
        if size is None:
            continue
        get = (
            size.get if isinstance(size, dict) else lambda key, size=size: getattr(size, key, None)
        )  # dict or SizeDict
        if get("height") and get("width"):
            return int(get("height")), int(get("width"))
        if get("shortest_edge"):
            return int(get("shortest_edge")), int(get("shortest_edge"))
    return None


def preprocess(bridge: Any, images: Any) -> torch.Tensor:
    """``bridge.preprocess(images)``: raw images -> ``pixel_values`` through the bridge's image processor."""
    if bridge.image_processor is None:
        raise InputError("this bridge has no image processor: set bridge.image_processor = AutoImageProcessor...")
    arrays = image_arrays(images, decode=_decode)
    return bridge._process(bridge.image_processor, arrays, bridge.config.encoder.num_channels)


def _decode(item: Any) -> Any:
    """PNG / JPEG bytes (a head's anchor images) -> a PIL image; anything else as it is."""
    if isinstance(item, (bytes, bytearray)):
        image = Image.open(io.BytesIO(item))
        image.load()
        return image
    return item


def _arrays(pixels: torch.Tensor) -> list[np.ndarray]:
    return [image.permute(1, 2, 0).numpy() for image in pixels.cpu()]


def to_uint8_images(images: Any, size: Sequence[int] | None = None, force_size: bool = False) -> torch.Tensor:
    """Images (a batch tensor, an array, a list of PIL images / arrays / encoded bytes) -> uint8 (N, C, H, W).
    Images of different sizes (all, with ``force_size``) are resized to ``size`` (H, W)."""
    arrays = image_arrays(images, decode=_decode)
    if force_size or len({a.shape[:2] for a in arrays}) > 1:
        if size is None:
            raise InputError("the images have different sizes: pass size=(height, width) to resize them")
        h, w = size
        arrays = [
            np.asarray(Image.fromarray(a.squeeze(2) if a.shape[2] == 1 else a).resize((w, h), Image.BILINEAR))
            for a in arrays
        ]
        arrays = [a[:, :, None] if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
