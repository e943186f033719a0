"""Anchor stores: the raw anchors as a bridge needs them (to re-embed with any encoder) and their cached embeddings.

Each model class declares its store (``anchor_store_class``); every store is built by ``from_config(config)`` and
keeps ``embeddings`` and ``is_fresh`` (the saved state-dict keys ``anchors.*`` are those of format 1).

Only relative imports of sibling files: shipped as remote code next to the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class AnchorStore(nn.Module):
    """The anchors as this model needs them: tokenised inputs (to re-embed) and their cached embeddings."""

    def __init__(self, num_anchors: int, seq_length: int, hidden_size: int):
        super().__init__()
        self.register_buffer("input_ids", torch.zeros(num_anchors, seq_length, dtype=torch.long))
        self.register_buffer("attention_mask", torch.zeros(num_anchors, seq_length, dtype=torch.long))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        # True once `embeddings` holds this encoder's anchor embeddings (saved, so a reload does not re-embed).
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, config) -> AnchorStore:
        return cls(config.num_anchors, config.anchor_seq_length, config.hidden_size)

    def has_inputs(self) -> bool:
        return self.input_ids.shape[0] >= 2 and bool(self.attention_mask.any())

    def model_inputs(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        mask = self.attention_mask[start:stop]
        length = max(int(mask.sum(dim=1).max()), 1)  # drop columns that are padding for every row
        return {"input_ids": self.input_ids[start:stop, :length], "attention_mask": mask[:, :length]}


class ImageAnchorStore(nn.Module):
    """Anchor images as ``uint8`` (k, C, H, W) and their cached embeddings."""

    def __init__(self, num_anchors: int, image_shape: Sequence[int], hidden_size: int):
        super().__init__()
        self.register_buffer("pixels", torch.zeros(num_anchors, *image_shape, dtype=torch.uint8))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, config) -> ImageAnchorStore:
        return cls(config.num_anchors, config.anchor_image_shape or [3, 1, 1], config.hidden_size)

    def has_inputs(self) -> bool:
        return self.pixels.shape[0] >= 2


class TensorAnchorStore(nn.Module):
    """Raw anchor inputs as one tensor (to re-embed with any encoder) and their cached embeddings."""

    def __init__(self, num_anchors: int, input_shape: Sequence[int], input_dtype: str, hidden_size: int):
        super().__init__()
        dtype = getattr(torch, input_dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"unknown anchor input dtype {input_dtype!r}")
        self.register_buffer("inputs", torch.zeros(num_anchors, *input_shape, dtype=dtype))
        self.register_buffer("embeddings", torch.zeros(num_anchors, hidden_size))
        self.register_buffer("is_fresh", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, config) -> TensorAnchorStore:
        shape = config.anchor_input_shape
        return cls(config.num_anchors, [0] if shape is None else shape, config.anchor_input_dtype, config.hidden_size)

    def has_inputs(self) -> bool:
        return self.inputs.numel() > 0


def is_tuner_layer(module: nn.Module) -> bool:
    """A peft tuner layer (LoRA, IA3, ...), recognised without importing peft."""
    return (
        hasattr(module, "merged_adapters")
        and hasattr(module, "disable_adapters")
        and hasattr(module, "active_adapters")
    )


def encoder_fingerprint(encoder: nn.Module) -> tuple:
    """Changes whenever what ``encoder`` computes may have changed: ``(id, _version)`` of every parameter (optimizer
    steps, ``load_state_dict`` and in-place merges bump versions; injected or replaced modules bring new ids), and per
    peft tuner layer its active adapters (``set_adapter``), ``disable_adapters`` and merged adapters."""
    params = tuple((id(p), p._version) for p in encoder.parameters())
    tuners = tuple(
        (id(m), tuple(m.active_adapters), bool(m.disable_adapters), tuple(m.merged_adapters))
        for m in encoder.modules()
        if is_tuner_layer(m)
    )
    return params, tuners


def warn_degenerate_anchors(
    anchors: Sequence,
    embeddings: torch.Tensor | None,
    where: str = "from_encoder",
    stacklevel: int = 3,
    check_duplicates: bool = True,
) -> None:
    """Warn on duplicate anchor inputs (they add nothing) and on anchors the encoder embeds (almost) identically:
    every relative coordinate is then the same, so the logits no longer depend on the input.
    ``check_duplicates=False`` on attach: duplicates belong to the head, said once where it was built.
    ``embeddings=None`` (not embedded yet): duplicates only."""
    import warnings

    texts = [a for a in anchors if isinstance(a, (str, bytes))]  # other inputs (images, arrays): no reliable equality
    duplicates = len(texts) - len(set(texts)) if check_duplicates else 0
    if duplicates:
        seen: set = set()
        example = next(a for a in texts if a in seen or seen.add(a))
        warnings.warn(
            f"{where}: {duplicates} of the {len(anchors)} anchors are duplicates (e.g. {str(example)[:60]!r}); they "
            "add no information: pass distinct anchors",
            UserWarning,
            stacklevel=stacklevel,
        )
    if embeddings is None:
        return
    emb = embeddings.detach().float()
    spread = (emb - emb.mean(0, keepdim=True)).norm(dim=1).max()
    if not torch.isfinite(spread) or spread <= 1e-6 * (emb.norm(dim=1).max() + 1e-12):
        warnings.warn(
            f"{where}: the encoder embeds all {len(anchors)} anchors (almost) identically (degenerate anchors, zero "
            "variance): every input gets the same relative representation and the same prediction. Pass distinct "
            "anchors, or check the tokenizer and pooling",
            UserWarning,
            stacklevel=stacklevel,
        )
