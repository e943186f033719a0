"""Heads trained on cached embeddings with Accelerate (the encoders stay frozen and are never loaded here)."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..modeling.head import RelativeProductHead
from ..training.fit import fit_epochs
from .config import HeadSpec, MethodSpec, TrainingSpec

if TYPE_CHECKING:
    from accelerate import Accelerator
    from tqdm import tqdm

    from .distributed import LocalAccelerator


class AbsoluteHead(nn.Module):
    """The baseline: the same MLP classifier on the absolute embeddings (anchors ignored)."""

    def __init__(self, dim: int, num_labels: int, hidden: int, dropout: float):
        super().__init__()
        self.dim = dim
        self.classifier = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels)
        )

    def forward(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, subspace_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        if embeddings.shape[1] != self.dim:
            raise ValueError(f"absolute head trained on width {self.dim}, got {embeddings.shape[1]}")
        return self.classifier(embeddings)

    def represent(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, subspace_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.classifier[0](embeddings)

    def classify(self, representation: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`represent`'s output: the rest of ``forward``."""
        return self.classifier[1:](representation)


class CachedSubspaceHead(RelativeProductHead):
    """A ``RelativeProductHead`` (same weights, same state dict) that also accepts its raw relative subspaces
    (B, n, k), computed once per split: encoders are frozen and anchors fixed, so recomputing the l1/linf
    distances every step would only burn CPU."""

    def relative_subspaces(
        self, embeddings: torch.Tensor, anchors: torch.Tensor, mapped: torch.Tensor | None = None
    ) -> torch.Tensor:
        if embeddings.dim() == 3:
            return embeddings
        return super().relative_subspaces(embeddings, anchors, mapped)


def build_head(
    method: MethodSpec, head: HeadSpec, num_anchors: int, dim: int, num_labels: int, relative_anchors: int | None = None
) -> nn.Module:
    """``relative_anchors`` < ``num_anchors``: an aligned head reads the first ones as anchors, the rest (the
    alignment set) only fit its map."""
    if method.kind in ("absolute", "translation"):
        return AbsoluteHead(dim, num_labels, head.classifier_hidden_size, head.classifier_dropout)
    config = method.head_config(head, f"methods ({method.name})")
    if config.aligned and relative_anchors is not None and relative_anchors < num_anchors:
        config = config.replace(relative_anchors=relative_anchors)
    if config.aligned:  # the aligned component needs the embeddings themselves: no cached subspaces
        return RelativeProductHead(config, num_anchors, num_labels, embedding_dim=dim)
    return CachedSubspaceHead(config, num_anchors, num_labels)


@contextlib.contextmanager
def _one_thread_on_cpu(accelerator):
    """Head steps are small GEMMs: on a shared CPU, several OpenMP threads mostly spin-wait (measured 5-20x slower
    per step on a loaded 2-core box), so one thread per head is faster."""
    threads = torch.get_num_threads()
    if accelerator.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_head(
    method: MethodSpec,
    head_spec: HeadSpec,
    training: TrainingSpec,
    embeddings: np.ndarray,
    labels: np.ndarray,
    anchors: np.ndarray,
    num_labels: int,
    seed: int,
    accelerator: Accelerator | LocalAccelerator | None = None,
    progress: tqdm | None = None,
    feature_cache: dict | None = None,
    relative_anchors: int | None = None,
) -> nn.Module:
    """One head, trained from a seed: Accelerator-prepared model, optimizer and DataLoader; returns it in eval mode."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = accelerator or Accelerator()  # a fresh one per head (about 1 ms) drops the last head's references
    with _one_thread_on_cpu(accelerator):
        set_seed(seed)
        head = build_head(method, head_spec, len(anchors), embeddings.shape[1], num_labels, relative_anchors)
        data = torch.utils.data.TensorDataset(
            head_inputs(head, embeddings, anchors, feature_cache), torch.from_numpy(labels).long()
        )
        loader = torch.utils.data.DataLoader(
            data, batch_size=training.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        optimizer = torch.optim.Adam(
            head.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay, foreach=True
        )
        head, optimizer, loader = accelerator.prepare(head, optimizer, loader)
        anchor_tensor = anchor_tensor_of(anchors, accelerator.device, feature_cache)
        loss_fn = nn.CrossEntropyLoss()

        def batch_loss(head: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
            x, y = batch
            return loss_fn(head(x, anchor_tensor), y), len(y)

        try:
            fit_epochs(head, loader, optimizer, accelerator, training.num_epochs, batch_loss, progress)
        except FloatingPointError as error:
            raise FloatingPointError(f"training {method.name} (seed {seed}): {error}") from None
        return accelerator.unwrap_model(head).eval()


def anchor_tensor_of(
    anchors: np.ndarray, device: torch.device | str, feature_cache: dict | None = None
) -> torch.Tensor:
    """One tensor per anchor array and device for the run (kept in ``feature_cache``): the head fits the statistics
    of fixed anchors once per anchors tensor (``transforms.fitted_on_anchors``), so every head, seed and
    evaluation on these anchors shares that fit."""
    if feature_cache is None:
        return torch.from_numpy(anchors).to(device)
    store = feature_cache.setdefault("anchor_tensors", {})
    key = (id(anchors), str(device))
    if key not in store:  # the array is kept alongside, so its id cannot be reused while cached
        store[key] = (anchors, torch.from_numpy(anchors).to(device))
    return store[key][1]


def feature_cache_bytes() -> int:
    """How many bytes of relative features a stitch run keeps (``HF_BRIDGES_FEATURE_CACHE_MB``, default 1024):
    (n, projections, k) float32 per split, anchor set and projections would otherwise grow with n without bound
    (20k samples x 2,000 anchors x 4 projections: 640 MiB per entry)."""
    return int(float(os.environ.get("HF_BRIDGES_FEATURE_CACHE_MB", "1024")) * 2**20)


def head_inputs(
    head: nn.Module, embeddings: np.ndarray, anchors: np.ndarray, feature_cache: dict | None = None
) -> torch.Tensor:
    """What the head is fed: the raw relative subspaces (B, n, k), computed once per (split, anchors,
    projections, transform) and kept in ``feature_cache`` within :func:`feature_cache_bytes` (least recently used
    entries evicted first); the embeddings themselves for the absolute head, and for a relative head whose
    features alone would exceed the budget (the head then computes them per batch: memory bounded in n)."""
    if not isinstance(head, CachedSubspaceHead):
        return torch.from_numpy(embeddings)
    key = (id(embeddings), id(anchors), tuple(head.projection_names), head._abs_transform)
    cache = feature_cache if feature_cache is not None else {}
    if key in cache:
        cache[key] = cache.pop(key)  # most recently used last
        return cache[key][2]
    budget = feature_cache_bytes()
    size = embeddings.shape[0] * len(head.projection_names) * head.relative_anchors * 4
    if size > budget:
        return torch.from_numpy(embeddings)
    held = [k for k in cache if isinstance(k, tuple) and len(k) == 4 and isinstance(cache[k], tuple)]
    used = sum(cache[k][2].nbytes for k in held)
    for old in held:  # evict the least recently used until the new entry fits
        if used + size <= budget:
            break
        used -= cache.pop(old)[2].nbytes
    with torch.no_grad():
        # the arrays are kept alongside, so their ids cannot be reused by other arrays while cached
        cache[key] = (
            embeddings,
            anchors,
            head.relative_subspaces(torch.from_numpy(embeddings), torch.from_numpy(anchors)),
        )
    return cache[key][2]


@torch.inference_mode()
def predict(
    head: nn.Module,
    embeddings: np.ndarray,
    anchors: np.ndarray,
    subspace_weights: list[float] | None = None,
    batch_size: int = 1024,
    represent: bool = False,
    feature_cache: dict | None = None,
    limit: int | None = None,
) -> np.ndarray:
    """Logits (or r(z) with ``represent=True``) of a trained head on the first ``limit`` rows, eval mode, batched."""
    device = next(head.parameters()).device
    inputs = head_inputs(head, embeddings, anchors, feature_cache)[:limit]
    a = anchor_tensor_of(anchors, device, feature_cache)
    w = torch.tensor(subspace_weights, dtype=torch.float32, device=device) if subspace_weights is not None else None
    fn = head.represent if represent else head
    outs = [fn(inputs[i : i + batch_size].to(device), a, w).float().cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(outs).numpy()


def _classify(head: nn.Module, representation: torch.Tensor) -> torch.Tensor:
    """The rest of the head's ``forward`` after its representation (the same operations, so the same logits)."""
    if isinstance(head, AbsoluteHead):
        return head.classify(representation)
    return head.classifier(representation) if head.classifier is not None else representation


@torch.inference_mode()
def predict_with_representation(
    head: nn.Module,
    embeddings: np.ndarray,
    anchors: np.ndarray,
    subspace_weights: list[float] | None,
    limit: int,
    feature_cache: dict | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """``predict``'s logits of every row and r(z) of the first ``limit`` rows. When ``limit`` covers every row, one
    pass: the forward computes r(z) anyway, the classifier reads it (the same batches and operations as the two
    calls, so the same numbers). Otherwise the two calls, so that r(z) comes from the same batches as before."""
    if limit < len(embeddings):
        return (
            predict(head, embeddings, anchors, subspace_weights, batch_size, feature_cache=feature_cache),
            predict(head, embeddings, anchors, subspace_weights, batch_size, True, feature_cache, limit),
        )
    device = next(head.parameters()).device
    inputs = head_inputs(head, embeddings, anchors, feature_cache)
    a = anchor_tensor_of(anchors, device, feature_cache)
    w = torch.tensor(subspace_weights, dtype=torch.float32, device=device) if subspace_weights is not None else None
    logits, representations = [], []
    for i in range(0, len(inputs), batch_size):
        representation = head.represent(inputs[i : i + batch_size].to(device), a, w)
        logits.append(_classify(head, representation).float().cpu())
        representations.append(representation.float().cpu())
    return torch.cat(logits).numpy(), torch.cat(representations).numpy()
