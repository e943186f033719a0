"""Cached encoder features for frozen-encoder runs: the encoder (frozen, anchors fixed) runs once per split instead
of once per batch per epoch; the head then trains through the model's ``features=`` path.

Stored as a ``datasets.Dataset`` (``features``, ``labels``) in torch format, so the DataLoader / Accelerate
``prepare`` / seedable-sampler path, and with it the data order and mid-epoch resume, stay as without the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import torch
from torch.utils.data import DataLoader

from .config import TrainConfig

if TYPE_CHECKING:
    from ..modeling.modeling_bridge import BridgeForSequenceClassification


def use_feature_cache(cfg: TrainConfig, train_batches: int | None = None) -> bool:
    """``auto``/``true``: on when nothing in the encoder trains (frozen, no LoRA); ``TrainConfig.check`` refuses
    ``true`` otherwise. ``auto`` stays off when ``max_steps`` ends the run before one epoch of ``train_batches``
    (a smoke run would otherwise embed the whole split to train a few steps)."""
    cfg.check()
    mode = str(cfg.cache_features).lower()
    if mode == "false" or cfg.lora is not None or not cfg.freeze_encoder:
        return False
    short = cfg.max_steps is not None and train_batches is not None
    return not (mode == "auto" and short and cfg.max_steps * cfg.gradient_accumulation_steps < train_batches)


@torch.no_grad()
def embed_split(model: BridgeForSequenceClassification, loader: DataLoader, device: torch.device) -> datasets.Dataset:
    """Pooled embeddings of every row of ``loader`` (unshuffled), in eval mode, in the loader's row order."""
    was_training = model.training
    model.eval()
    features, labels = [], []
    for batch in loader:
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        features.append(model.embed(**inputs).float().cpu())
        labels.append(batch["labels"])
    model.train(was_training)
    table = {"features": torch.cat(features).numpy(), "labels": torch.cat(labels).numpy()}
    return datasets.Dataset.from_dict(table).with_format("torch")


def feature_loaders(
    cfg: TrainConfig,
    model: BridgeForSequenceClassification,
    train: DataLoader,
    evaluation: DataLoader,
    device: torch.device,
) -> tuple[DataLoader, DataLoader]:
    """Feature DataLoaders replacing the token ones: same batch size, shuffle and row order, so the seeded
    sampler yields the same batches (as row indices) as the token loader would."""
    model.to(device)
    _ = model.anchor_embeddings  # embeds the anchors once on ``device`` (fixed for the run: the encoder is frozen)
    ordered = DataLoader(train.dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=train.collate_fn)
    # Iterating a DataLoader draws a seed from the global CPU generator: fork it, so that the head's dropout masks
    # follow the same random stream as in an uncached run (eval-mode embedding draws nothing on the device).
    with torch.random.fork_rng(devices=[]):
        train_features = embed_split(model, ordered, device)
        eval_features = embed_split(model, evaluation, device)
    return (
        DataLoader(train_features, batch_size=cfg.batch_size, shuffle=True),
        DataLoader(eval_features, batch_size=cfg.batch_size, shuffle=False),
    )
