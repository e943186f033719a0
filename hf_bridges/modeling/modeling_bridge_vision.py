"""``BridgeForImageClassification``: any transformers vision encoder (``AutoModel`` + ``AutoImageProcessor``) with a
relative product head. Anchors are images.

Anchor storage: the anchor images are kept as a ``uint8`` buffer ``anchors.pixels`` (k, C, H, W) at their native
size when they share one (else resized once to the processor's input size), *not* as processed ``pixel_values``.
Why: processed float pixels for 1280 anchors at 224 px are ~770 MB and are specific to one encoder's processor
(size, crop, mean/std); raw ``uint8`` is 4x smaller at the same size (1 MB for 1280 Fashion-MNIST anchors), exact,
loads with no decoding code (safetensors), and any encoder's processor runs on it at refresh time, which is what a
head moving to another encoder needs. (Head-only files store the same images as PNG bytes in Parquet.)

Only relative imports: shipped as remote code next to the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoImageProcessor, PreTrainedModel

from .anchor_stores import ImageAnchorStore, warn_degenerate_anchors
from .bridge_arguments import _given, _hub, check_config_kwargs, resolve_head
from .bridge_inputs import with_alignment
from .bridge_outputs import BridgeClassifierOutput, ClassifierMixin
from .configuration_bridge import BridgeConfig
from .loaders import load_encoder, load_image_processor
from .modeling_bridge import BridgePreTrainedModel

__all__ = ["BridgeForImageClassification", "ImageAnchorStore", "processor_size", "to_uint8_images"]
from .pooling import get_pooling


def _one_image(image: Any) -> np.ndarray:
    """One image -> HWC array (PIL and numpy are HWC/HW; a torch tensor is CHW/HW, the torch convention; bytes are
    an encoded file such as the PNG anchors of a head)."""
    if isinstance(image, (bytes, bytearray)):
        import io

        from PIL import Image

        image = Image.open(io.BytesIO(image))
        image.load()
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
        raise ValueError(f"an image must be (H, W), (H, W, C) or a CHW tensor, got shape {array.shape}")
    return array


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"images must be numeric (uint8 0-255 or float 0-1), got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.integer):  # integers are 0-255 pixel values
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"integer images must be in 0-255, got values from {array.min()} to {array.max()}")
        return array.astype(np.uint8)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("images contain NaN or inf")
    if array.size and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def to_uint8_images(images: Any, size: Sequence[int] | None = None, force_size: bool = False) -> torch.Tensor:
    """Images (a batch tensor N,C,H,W / N,H,W, an array N,H,W,C / N,H,W, or a list of PIL / arrays) -> uint8
    (N, C, H, W). Images of different sizes (all, with ``force_size``) are resized to ``size`` (H, W); grayscale
    next to RGB becomes RGB."""
    if isinstance(images, torch.Tensor) and images.dim() in (3, 4):
        images = images.detach().cpu()
        arrays = [_one_image(img) for img in images]
    elif (isinstance(images, np.ndarray) and images.ndim in (3, 4)) or isinstance(images, (list, tuple)):
        arrays = [_one_image(img) for img in images]
    else:
        raise ValueError(
            f"images must be a batch tensor (N, C, H, W), an array (N, H, W[, C]) or a list of images, got "
            f"{type(images).__name__}" + (f" of shape {tuple(images.shape)}" if hasattr(images, "shape") else "")
        )
    if not arrays:
        raise ValueError("no images given")
    arrays = [_as_uint8(a) for a in arrays]
    channels = {a.shape[2] for a in arrays}
    if not channels <= {1, 3}:
        raise ValueError(f"images must have 1 (grayscale) or 3 (RGB) channels, got {sorted(channels)}")
    if channels == {1, 3}:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    if force_size or len({a.shape[:2] for a in arrays}) > 1:
        if size is None:
            raise ValueError("the images have different sizes: pass size=(height, width) to resize them")
        from PIL import Image

        h, w = size
        arrays = [
            np.asarray(Image.fromarray(a.squeeze(2) if a.shape[2] == 1 else a).resize((w, h), Image.BILINEAR))
            for a in arrays
        ]
        arrays = [a[:, :, None] if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


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


class BridgeForImageClassification(ClassifierMixin, BridgePreTrainedModel):
    """Vision encoder + relative product head + MLP classifier; ``forward(pixel_values, labels)`` (Trainer-ready).

    Raw images go through :meth:`preprocess` (the encoder's image processor) to become ``pixel_values``.
    """

    main_input_name = "pixel_values"
    input_names = ("pixel_values",)
    anchor_store_class = ImageAnchorStore
    _extra_auto_map = {"AutoModelForImageClassification": "modeling_bridge_vision.BridgeForImageClassification"}

    def __init__(self, config: BridgeConfig, encoder: nn.Module | None = None):
        if config.modality != "image":
            raise ValueError(
                f"this config is a {config.modality!r} bridge, not an image one: load it with "
                "BridgeForSequenceClassification (text) or ModuleBridgeForClassification (features)"
            )
        super().__init__(config, encoder=encoder)
        self.image_processor = None  # set by from_encoder / from_pretrained; saved next to the weights

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_encoder(
        cls,
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
    ) -> BridgeForImageClassification:
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
            return _hub().attach_head(
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
        probe = cls._process(image_processor, pixels[:2], model.config.num_channels)
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
            **_given(projections=projections, aggregation=aggregation),
            **config_kwargs,
        )
        bridge = cls(config, encoder=model)
        bridge.image_processor = image_processor
        bridge.anchors.pixels.copy_(pixels)
        if embed_anchors:
            warn_degenerate_anchors(list(pixels), bridge.refresh_anchors())
        return bridge

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, image_processor: Any = None, **kwargs):
        bridge = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if image_processor is None:
            try:  # saved next to the weights by save_pretrained
                image_processor = AutoImageProcessor.from_pretrained(
                    pretrained_model_name_or_path, revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir")
                )
            except (OSError, ValueError):
                image_processor = None  # only needed to re-embed the anchors; refresh_anchors says so
        bridge.image_processor = image_processor
        return bridge

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.image_processor is not None and kwargs.get("is_main_process", True):
            self.image_processor.save_pretrained(save_directory)
        return result

    def anchor_png_bytes(self) -> list[bytes]:
        """The anchor images as PNG files (lossless, compact): how a head-only save stores them in Parquet."""
        import io

        from PIL import Image

        files = []
        for image in self.anchors.pixels.cpu():
            array = image.permute(1, 2, 0).numpy()
            buffer = io.BytesIO()
            Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
            files.append(buffer.getvalue())
        return files

    # ------------------------------------------------------------------------------------------------ inputs
    @staticmethod
    def _process(processor: Any, pixels: torch.Tensor, channels: int) -> torch.Tensor:
        if pixels.shape[1] == 1 and channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        elif pixels.shape[1] != channels:
            raise ValueError(
                f"images have {pixels.shape[1]} channels but the encoder takes {channels}; convert them first"
            )
        arrays = [img.permute(1, 2, 0).numpy() for img in pixels.cpu()]
        return processor(images=arrays, return_tensors="pt")["pixel_values"]

    def preprocess(self, images: Any) -> torch.Tensor:
        """Raw images (PIL, arrays, uint8 or 0-1 float tensors) -> ``pixel_values`` for this encoder."""
        if self.image_processor is None:
            raise ValueError("this bridge has no image processor: set bridge.image_processor = AutoImageProcessor...")
        pixels = to_uint8_images(images, size=processor_size(self.image_processor))
        return self._process(self.image_processor, pixels, self.config.encoder.num_channels)

    # ------------------------------------------------------------------- what an image bridge declares
    def _check_anchor_inputs(self) -> None:
        if self.image_processor is None:
            raise ValueError(
                "re-embedding the anchor images needs the encoder's image processor: set bridge.image_processor "
                "(AutoImageProcessor.from_pretrained(<encoder id>)) or pass image_processor= to from_pretrained"
            )

    def _anchor_inputs(self, start: int, stop: int) -> dict[str, Any]:
        pixels = self.anchors.pixels[start:stop]
        return {"pixel_values": self._process(self.image_processor, pixels, self.config.encoder.num_channels)}

    def _encode(self, pixel_values: torch.Tensor | None = None, **encoder_inputs: Any) -> torch.Tensor:
        """Pooled embeddings of a batch of ``pixel_values`` (B, C, H, W)."""
        if pixel_values is None or encoder_inputs.get("input_ids") is not None:
            raise ValueError("an image bridge takes pixel_values (see preprocess(images)), not input_ids")
        if pixel_values.dim() != 4 or pixel_values.shape[0] == 0:
            raise ValueError(
                f"pixel_values must be a non-empty (batch, channels, height, width) tensor, got "
                f"shape {tuple(pixel_values.shape)}"
            )
        channels = self.config.encoder.num_channels
        if pixel_values.shape[1] != channels:
            raise ValueError(
                f"pixel_values have {pixel_values.shape[1]} channels, the encoder takes {channels}; "
                "pass the images through bridge.preprocess(images)"
            )
        try:
            pixel_values = pixel_values.to(self.encoder.device, self.encoder.dtype)  # processed anchors are on CPU
            outputs = self.encoder(pixel_values=pixel_values, return_dict=True)
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"{type(self.encoder).__name__} failed on pixel_values of shape {tuple(pixel_values.shape)} "
                f"(processor size {processor_size(self.image_processor)}): {error}; pass the images through "
                "bridge.preprocess(images)"
            ) from error
        return get_pooling(self.config.pooling)(outputs, None)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        subspace_weights: torch.Tensor | None = None,
        output_representations: bool = False,
        return_dict: bool | None = None,
        input_ids: torch.Tensor | None = None,
    ) -> BridgeClassifierOutput:
        if input_ids is not None:
            raise ValueError("an image bridge takes pixel_values (see preprocess(images)), not input_ids")
        if features is None and pixel_values is None:
            raise ValueError("pass pixel_values (see preprocess(images)) or features (precomputed embeddings)")
        features, representation = self.forward_features(features, subspace_weights, pixel_values=pixel_values)
        return self._classify(features, representation, labels, output_representations, return_dict)
