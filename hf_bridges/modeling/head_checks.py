"""Checks of what enters a head (anchor and sample embeddings): one clear error in eager mode, an in-graph
assertion under ``torch.compile`` (a data-dependent ``if`` would break the graph).

Only torch: shipped as remote code next to the weights.
"""

from __future__ import annotations

import torch


def _all_finite(tensor: torch.Tensor, message: str) -> bool:
    """Eager: whether every value is finite. Under ``torch.compile``: an in-graph assertion (no data-dependent
    branch, so no graph break), then True."""
    if torch.compiler.is_compiling():
        torch._assert_async(torch.isfinite(tensor).all(), message)
        return True
    return bool(torch.isfinite(tensor).all())


def check_anchor_embeddings(anchors: torch.Tensor) -> None:
    if anchors.dim() != 2 or anchors.shape[0] < 2:
        raise ValueError(
            f"anchor embeddings must be (num_anchors >= 2, dim), got shape {tuple(anchors.shape)}; "
            "pass at least 2 anchors"
        )
    message = "anchor embeddings contain NaN or inf; check the encoder and the anchor inputs"
    if not _all_finite(anchors, message):
        raise ValueError(message)


def check_embeddings(embeddings: torch.Tensor, anchor_dim: int) -> None:
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (batch, dim), got shape {tuple(embeddings.shape)}")
    if embeddings.shape[0] == 0:
        raise ValueError("empty batch: the head got 0 samples")
    if embeddings.shape[1] != anchor_dim:
        raise ValueError(
            f"embedding width {embeddings.shape[1]} differs from the anchors' width {anchor_dim}: the anchors were "
            "embedded by another encoder; call refresh_anchors() or attach the head to this encoder"
        )
    if not _all_finite(embeddings, "the encoder produced NaN or inf embeddings"):
        bad = (~torch.isfinite(embeddings)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"the encoder produced NaN or inf embeddings for batch rows {bad[:10]}")
