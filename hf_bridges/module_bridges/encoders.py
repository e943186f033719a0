"""Any ``nn.Module`` as a bridge encoder: a graph network, a timm-style CNN, an audio model, a lookup table.

:class:`ModuleEncoder` wraps a module so it maps ``inputs -> (batch, dim)`` and checks what the module returns, so
a module that returns a tuple, a dict or a tensor of the wrong rank fails with an error that says what to pass
instead. :class:`ImagePreprocess` turns raw ``uint8`` images into the module's normalised input inside the
encoder, so image anchors can be stored as ``uint8`` at their native size (4x smaller than float pixels, and the
same stored anchors serve encoders with different input sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..modeling.registry import ConfigError, InputError, Registry, registrar
from ..offline.vision import EFFICIENTNET_LITE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImagePreprocess(nn.Module):
    """``(B, C, H, W)`` images (``uint8`` 0-255 or float 0-1) -> resized, normalised float pixels.

    Grayscale (C=1) is replicated to ``channels``; any other channel mismatch is an error.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channels: int = 3,
    ):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.channels = channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:  # (B, H, W) grayscale
            images = images.unsqueeze(1)
        if images.dim() != 4:
            raise InputError(f"images must be (batch, channels, height, width), got shape {tuple(images.shape)}")
        channels = images.shape[1]
        if channels == 1 and self.channels != 1:
            images = images.expand(-1, self.channels, -1, -1)
        elif channels != self.channels:
            raise InputError(
                f"images have {channels} channels but this encoder takes {self.channels} (or 1, grayscale, which "
                f"is replicated); convert them (e.g. PIL .convert('RGB')) before passing them"
            )
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if tuple(x.shape[-2:]) != self.size:
            x = nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items (" + ", ".join(_describe(v) for v in value[:4]) + ")"
    if isinstance(value, dict):
        return f"a {type(value).__name__} with keys {list(value)[:8]}"
    return f"a {type(value).__name__}"


class ModuleEncoder(nn.Module):
    """Wrap a plain ``nn.Module`` so it maps ``inputs -> (batch, dim)`` embeddings.

    Args:
        module: the encoder.
        method: the method that embeds (``"forward"``; ``"extract_features"`` for EfficientNet-style CNNs).
        output: how to pick the embedding from what the module returns, when it is not a tensor: an int index
            into a tuple, a key of a dict / ``ModelOutput``, or a callable ``output(returned) -> tensor``.
        pooling: ``None`` (the module already returns ``(B, D)``) or ``"mean"``: average a ``(B, T, D)`` token
            tensor over T or a ``(B, C, H, W)`` feature map over H and W.
        preprocess: an optional module applied to the inputs first (e.g. :class:`ImagePreprocess`).
    """

    def __init__(
        self,
        module: nn.Module,
        method: str = "forward",
        output: int | str | Callable[[Any], torch.Tensor] | None = None,
        pooling: str | None = None,
        preprocess: nn.Module | None = None,
    ):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if method != "forward" and not callable(getattr(module, method, None)):
            raise ConfigError(f"{type(module).__name__} has no method {method!r}")
        if pooling not in (None, "mean"):
            raise ConfigError(f"unknown pooling {pooling!r} for a module encoder; valid: None, 'mean'")
        self.module = module
        self.method = method
        self.output = output
        self.pooling = pooling
        self.preprocess = preprocess

    @property
    def name(self) -> str:
        return f"{type(self.module).__module__}.{type(self.module).__qualname__}"

    def _select(self, returned: Any) -> Any:
        if self.output is None:
            return returned
        if callable(self.output):
            return self.output(returned)
        try:
            return returned[self.output]
        except (KeyError, IndexError, TypeError) as error:
            raise InputError(
                f"output={self.output!r} cannot be picked from what {type(self.module).__name__}.{self.method} "
                f"returned ({_describe(returned)}): {error}"
            ) from None

    def forward(self, inputs: Any) -> torch.Tensor:
        if self.preprocess is not None:
            inputs = self.preprocess(inputs)
        fn = self.module if self.method == "forward" else getattr(self.module, self.method)
        embeddings = self._select(fn(inputs))
        where = f"{type(self.module).__name__}.{self.method}"
        if not isinstance(embeddings, torch.Tensor):
            raise InputError(
                f"{where} returned {_describe(embeddings)}, not a tensor; tell the bridge which item is the "
                "embedding with ModuleEncoder(module, output=0) (tuple index), output='key' (dict) or "
                "output=callable"
            )
        if self.pooling == "mean" and embeddings.dim() == 3:
            embeddings = embeddings.mean(dim=1)
        elif self.pooling == "mean" and embeddings.dim() == 4:
            embeddings = embeddings.flatten(2).mean(dim=2)
        if embeddings.dim() != 2:
            hint = (
                "pass pooling='mean' to average tokens (B, T, D) or feature maps (B, C, H, W)"
                if embeddings.dim() in (3, 4) and self.pooling is None
                else "make the module return one vector per sample"
            )
            raise InputError(f"{where} must give (batch, dim) embeddings, got shape {tuple(embeddings.shape)}; {hint}")
        if not embeddings.is_floating_point():
            raise InputError(f"{where} returned {embeddings.dtype} embeddings; a bridge needs floating point")
        return embeddings


def as_module_encoder(encoder: nn.Module, **kwargs: Any) -> ModuleEncoder:
    """``encoder`` itself when it is already a :class:`ModuleEncoder`, else wrapped with ``kwargs``."""
    if isinstance(encoder, ModuleEncoder):
        if kwargs:
            raise ConfigError(f"the encoder is already a ModuleEncoder; options {sorted(kwargs)} would be ignored")
        return encoder
    return ModuleEncoder(encoder, **kwargs)


ModuleEncoderFactory = Callable[..., ModuleEncoder]
# Named factories of ModuleEncoder, so configs (e.g. ``hf-bridges stitch``) can refer to a plain module by name.
MODULE_ENCODERS: Registry[ModuleEncoderFactory] = Registry("module encoder")
register_module_encoder = registrar(MODULE_ENCODERS)


def build_module_encoder(name: str, **options: Any) -> ModuleEncoder:
    return as_module_encoder(MODULE_ENCODERS.get(name)(**options))


def _packaged_efficientnet(variant: str, size: int | None = None) -> ModuleEncoder:
    """A packaged EfficientNet-Lite (``hf_bridges.offline``): uint8 or 0-1 images (B, C, H, W) -> 1280-d, TF-style
    normalisation, resized to ``size`` (default: the variant's native input size)."""
    from ..offline.vision import EFFICIENTNET_MEAN, EFFICIENTNET_STD, load_efficientnet_lite

    model, native = load_efficientnet_lite(variant)
    preprocess = ImagePreprocess(size or native, EFFICIENTNET_MEAN, EFFICIENTNET_STD)
    return ModuleEncoder(model, method="extract_features", pooling="mean", preprocess=preprocess)


for _variant in EFFICIENTNET_LITE:
    register_module_encoder(_variant)(lambda size=None, _v=_variant: _packaged_efficientnet(_v, size))
