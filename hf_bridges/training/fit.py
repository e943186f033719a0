"""The fitting loop of the small models: :func:`fit_epochs` (Adam steps over an Accelerate-prepared loader), used by
:func:`fit` (any module whose ``forward(inputs=, labels=)`` returns ``.loss``: the examples' autoencoders and graph
networks, module bridges) and by the stitch benchmark's heads (``stitching.training.train_head``). Text bridges
have the full training stack (checkpoints, resume, trackers) in :mod:`hf_bridges.training.loop`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def fit_epochs(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    accelerator: Any,
    epochs: int,
    batch_loss: Callable[[nn.Module, Any], tuple[torch.Tensor, int]],
    progress: Any = None,
) -> list[float]:
    """``epochs`` passes of ``loss, rows = batch_loss(model, batch)``, zero_grad / backward / step; returns the mean
    loss of each epoch (kept as a tensor until the epoch ends: no per-step sync). Raises on a non-finite loss."""
    model.train()
    history = []
    for _ in range(epochs):
        total, count = 0.0, 0  # a tensor on the loss's device after the first step: no per-step sync
        for batch in loader:
            loss, rows = batch_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            total, count = total + loss.detach().float() * rows, count + rows
        history.append(float(total) / max(count, 1))
        if progress is not None:
            progress.update(1)
    if history and not torch.isfinite(torch.tensor(history[-1])):
        raise FloatingPointError(f"training diverged: mean loss {history[-1]} in the last epoch")
    return history


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": self.inputs[i], "labels": self.labels[i]}


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` (forward(inputs=, labels=) -> .loss) with Adam through Accelerate; returns per-epoch losses."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    set_seed(seed)
    accelerator = Accelerator()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    loader = torch.utils.data.DataLoader(
        _Pairs(inputs, labels), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    def batch_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
        return model(inputs=batch["inputs"], labels=batch["labels"]).loss, len(batch["inputs"])

    history = fit_epochs(model, loader, optimizer, accelerator, epochs, batch_loss)
    model.eval()
    return history
