"""Reconstruction, as in the paper: a *relative decoder* maps the product representation r(z) back to the input
space, so a decoder trained on one autoencoder's encoder decodes another, independently trained, encoder zero-shot.

- :class:`BridgeForReconstruction`: plain-module encoder + relative product head + MLP decoder; ``forward(inputs,
  labels=target)`` returns the reconstruction and the MSE loss. Saved / loaded / re-attached like every module
  bridge (``from_pretrained(path, module=other_encoder)`` is zero-shot decoder stitching).
- :class:`AutoEncoder`: the small MLP autoencoder trained from scratch whose encoders are stitched.
- :func:`save_image_grid`: rows of images in one PNG, written atomically, so a person can look at them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._io import atomic_path
from ..module_bridges.reconstruction import BridgeForReconstruction, ReconstructionOutput, _targets
from ..training.fit import fit


class AutoEncoder(nn.Module):
    """A small MLP autoencoder on flattened images (0-1), trained from scratch; ``encoder`` is what gets stitched."""

    def __init__(self, input_dim: int = 784, hidden: int = 256, latent: int = 32, seed: int = 0):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(input_dim, hidden), nn.GELU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, input_dim))
        torch.random.set_rng_state(generator_state)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> ReconstructionOutput:
        z = self.encoder(inputs)
        out = self.decode(z).view(inputs.shape[0], -1)
        loss = nn.functional.mse_loss(out, _targets(labels, out)) if labels is not None else None
        return ReconstructionOutput(loss=loss, reconstruction=out, embeddings=z)


@torch.no_grad()
def reconstruct(model: nn.Module, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Reconstructions of ``inputs`` by an :class:`AutoEncoder` or a :class:`BridgeForReconstruction` (eval mode)."""
    was_training = model.training
    model.eval()
    parts = [model(inputs=inputs[i : i + batch_size]).reconstruction for i in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(parts)


def save_image_grid(rows: Sequence[tuple[str, torch.Tensor]], path: str | os.PathLike, size: int = 28) -> str:
    """One PNG: each row a label and its images (N, H*W or N, 1, H, W, 0-1). Written to a temp file, then renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.8 + 1.6, len(rows) * 0.85), squeeze=False)
    for r, (label, images) in enumerate(rows):
        images = images.detach().float().reshape(len(images), size, size).clamp(0, 1).cpu()
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c].numpy(), cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return str(path)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.mse_loss(a.reshape(len(a), -1), b.reshape(len(b), -1)))


def stitch_reconstruction(
    autoencoders: dict[str, AutoEncoder],
    train: torch.Tensor,
    test: torch.Tensor,
    anchor_index: Sequence[int],
    methods: dict[str, dict],
    *,
    output_shape: Sequence[int] = (1, 28, 28),
    epochs: int = 10,
    seed: int = 0,
    keep: int = 0,
) -> dict:
    """Train one relative decoder per (method, autoencoder) on that encoder's r(z), then decode every other
    encoder's r(z) with it, zero-shot. Next to it, the absolute baseline: autoencoder i's own decoder on encoder j's
    latents (only where the latent widths match). Returns MSE matrices (and ``keep`` test reconstructions per cell).
    """
    names = list(autoencoders)
    results: dict[str, Any] = {"encoders": {}, "methods": {}, "samples": {}}
    for name, ae in autoencoders.items():
        results["encoders"][name] = {"latent": ae.encoder[-1].out_features, "hidden": ae.encoder[1].out_features}
    results["mean_image_mse"] = _mse(train.mean(0, keepdim=True).expand_as(test), test)
    absolute = {}
    for src in names:
        for tgt in names:
            z = autoencoders[tgt].encoder(test).detach()
            if z.shape[1] != autoencoders[src].decoder[0].in_features:
                absolute[f"{src}->{tgt}"] = None  # the decoder cannot even take this encoder's latents
                continue
            with torch.no_grad():
                out = autoencoders[src].decode(z)
            absolute[f"{src}->{tgt}"] = _mse(out, test)
            if keep:
                results["samples"][f"absolute {src}->{tgt}"] = out[:keep]
    results["methods"]["absolute"] = absolute
    for method, options in methods.items():
        cells = {}
        for src in names:
            bridge = BridgeForReconstruction.from_module(
                autoencoders[src].encoder,
                anchors=train[list(anchor_index)],
                output_shape=list(output_shape),
                **options,
            )
            fit(bridge, train, train, epochs=epochs, seed=seed)
            for tgt in names:
                bridge.attach_encoder(autoencoders[tgt].encoder)  # zero-shot: only the anchors are re-embedded
                out = reconstruct(bridge, test)
                cells[f"{src}->{tgt}"] = _mse(out, test)
                if keep:
                    results["samples"][f"{method} {src}->{tgt}"] = out[:keep]
        results["methods"][method] = cells
    return results


def reconstruction_table(results: dict) -> str:
    """Markdown: per method, mean same-encoder and stitched MSE, then the full source -> target matrix."""
    names = list(results["encoders"])
    lines = ["| method | same-encoder MSE | stitched MSE (mean) | stitched pairs |", "|---|---|---|---|"]
    for method, cells in results["methods"].items():
        same = [cells[f"{n}->{n}"] for n in names if cells.get(f"{n}->{n}") is not None]
        cross = [v for k, v in cells.items() if k.split("->")[0] != k.split("->")[1] and v is not None]
        pairs = sum(1 for k in cells if k.split("->")[0] != k.split("->")[1])
        mean = lambda xs: f"{sum(xs) / len(xs):.4f}" if xs else "n/a"
        lines.append(f"| {method} | {mean(same)} | {mean(cross)} | {len(cross)} of {pairs} |")
    lines += ["", f"Mean-image baseline (predict the train mean): MSE {results['mean_image_mse']:.4f}", ""]
    for method, cells in results["methods"].items():
        lines += [
            f"**{method}** (row: decoder trained on; column: encoder used)",
            "",
            "| decoder \\ encoder | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for src in names:
            row = [cells[f"{src}->{tgt}"] for tgt in names]
            lines.append(
                f"| {src} | " + " | ".join("n/a (dims differ)" if v is None else f"{v:.4f}" for v in row) + " |"
            )
        lines.append("")
    return "\n".join(lines)
