"""``fit``: a minimal Accelerate loop for any module whose ``forward(inputs=, labels=)`` returns ``.loss``.

For the small from-scratch models of the examples (autoencoders, graph networks) and the module bridges trained
on them; text bridges have the full training stack in :mod:`hf_bridges.training`.
"""

from __future__ import annotations

import torch
from torch import nn


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
    model.train()
    history = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for batch in loader:
            loss = model(inputs=batch["inputs"], labels=batch["labels"]).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            total, count = total + float(loss.detach()) * len(batch["inputs"]), count + len(batch["inputs"])
        history.append(total / count)
    model.eval()
    return history
