"""Building an image bridge: ``BridgeForImageClassification.from_encoder(encoder, anchors=images)`` lands here.

The anchor images are stored as ``uint8`` (k, C, H, W) at their native size when they share one (else resized once
to the processor's input size), not as processed ``pixel_values``: processed float pixels of 1,280 anchors at 224 px
take ~770 MB and belong to one encoder's processor, while raw ``uint8`` is 4x smaller at the same size, exact, loads
with no decoding code (safetensors), and any encoder's processor runs on it when a head moves to another encoder.
Head-only files store the same images as PNG bytes in Parquet (:func:`anchor_png_bytes`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import PreTrainedModel

from ..modeling.configuration_bridge import BridgeConfig
from ..modeling.head import get_pooling
from ..modeling.modeling_bridge import image_arrays, processor_size
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
            raise ValueError("pass either anchors=... (a new head) or head=... (a trained head brings its anchors)")
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
        raise ValueError("an image bridge takes image_processor=..., not a tokenizer")
    modality = config_kwargs.pop("modality", "image")
    if modality != "image":
        raise ValueError(f"BridgeForImageClassification builds image bridges, got modality={modality!r}")
    if anchors is None:
        raise ValueError("pass anchors=... (images) or head=... (a trained head)")
    if alignment_inputs is not None:  # as one list of images: the anchors first
        anchors, anchor_labels, head_config = with_alignment(
            list(anchors), anchor_labels, head_config, list(alignment_inputs)
        )
    model = load_encoder(encoder, revision, **(encoder_kwargs or {}))
    if getattr(model, "main_input_name", None) != "pixel_values":
        raise ValueError(
            f"{type(model).__name__} is not an image encoder (it takes {model.main_input_name!r}); use "
            "BridgeForSequenceClassification for text encoders"
        )
    name = encoder if isinstance(encoder, str) else getattr(model, "name_or_path", None) or None
    if image_processor is None:
        if not name:
            raise ValueError("the encoder was passed as a model without name_or_path: pass image_processor=...")
        image_processor = load_image_processor(name, revision)
    pixels = to_uint8_images(
        anchors, size=anchor_image_size or processor_size(image_processor), force_size=anchor_image_size is not None
    )
    if pixels.shape[0] < 2:
        raise ValueError(f"a bridge needs at least 2 anchor images, got {pixels.shape[0]}")
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
            raise ValueError("the images have different sizes: pass size=(height, width) to resize them")
        h, w = size
        arrays = [
            np.asarray(Image.fromarray(a.squeeze(2) if a.shape[2] == 1 else a).resize((w, h), Image.BILINEAR))
            for a in arrays
        ]
        arrays = [a[:, :, None] if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def anchor_png_bytes(bridge: Any) -> list[bytes]:
    """The anchor images as PNG files (lossless, compact): how a head-only save stores them in Parquet."""
    files = []
    for image in bridge.anchors.pixels.cpu():
        array = image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return files
