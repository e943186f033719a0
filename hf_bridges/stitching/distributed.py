"""The stitch embedding across processes and devices: ``accelerate launch -n N hf-bridges stitch ...``.

With one process this is ``EmbeddingCache.embeddings`` unchanged. With N processes (accelerate's ``PartialState``,
set up by ``accelerate launch`` / ``torchrun``) every process embeds every N-th embedding window of the missing
cache shards (``cache.embed_windows``: what one process embeds in one call) on its own device, in the calls one
process makes; the shards are gathered on the main process (``gather_object``), which
alone writes the cache from them while the others wait at a barrier and then read the finished cache: the cache is,
bit for bit, the one a single process writes (tests/test_distributed_embedding.py, tests/test_journeys_stitch.py).

After the embedding the other processes leave and the main process trains and scores the heads alone, with
``LocalAccelerator`` (no DDP): heads are milliseconds of small GEMMs, so data parallel over them would cost more
in all-reduces than it saves, and would change the float reduction order (and the component-dropout RNG
streams), so the results would no longer be those of one process. Keeping the others in the world until the
end would not help either: they would idle in a barrier past the process group's timeout (30 min) on long runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import datasets
    import torch
    from accelerate import PartialState
    from torch import nn

    from .cache import EmbeddingCache


def world_size() -> int:
    """Processes in this launch, read from the launcher's environment (no process group is created for 1)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def partial_state() -> PartialState:
    """accelerate's process state; ``cpu=True`` where there is no GPU (or ACCELERATE_USE_CPU is set), else a CPU
    torchrun silently becomes N unconnected worlds of one process (each writing the cache)."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import str_to_bool

    cpu = not torch.cuda.is_available() or bool(str_to_bool(os.environ.get("ACCELERATE_USE_CPU", "0")))
    state = PartialState(cpu=cpu)
    if state.num_processes != world_size():
        raise RuntimeError(
            f"WORLD_SIZE is {world_size()} but accelerate joined {state.num_processes} process(es); "
            "launch with `accelerate launch` or torchrun (ACCELERATE_USE_CPU=1 on CPU)"
        )
    return state


def is_main_process() -> bool:
    return world_size() == 1 or partial_state().is_main_process


def _shard_starts(cache, identity: dict, dataset) -> list[int]:
    """The first rows of the cache shards not on disk yet, as ``EmbeddingCache`` cuts them (``SHARD_ROWS`` rows)."""
    from .cache import SHARD_ROWS

    folder = cache.folder(identity, dataset._fingerprint)
    return [s for s in range(0, len(dataset), SHARD_ROWS) if not (folder / f"shard-{s:08d}").is_dir()]


def _feeder(dataset, column: str, starts: list[int], shards: dict[int, np.ndarray]) -> Callable[[dict], np.ndarray]:
    """An embed function that answers the cache's calls, in order, from the gathered shards (the cache embeds
    its missing shards in ``starts`` order); text inputs are checked against the rows they are answered with."""
    rows = np.concatenate([shards[s] for s in starts])
    order = [i for s in starts for i in range(s, s + len(shards[s]))]
    cursor = 0

    def embed(batch: dict) -> np.ndarray:
        nonlocal cursor
        values, expected = batch[column], order[cursor : cursor + len(batch[column])]
        if len(expected) != len(values) or (
            isinstance(values[0], str) and dataset.select(expected)[column] != list(values)
        ):
            raise RuntimeError("the embedding cache asked for rows in another order than the processes embedded them")
        cursor += len(values)
        return rows[cursor - len(values) : cursor]

    return embed


def cached_embeddings(
    cache: EmbeddingCache,
    identity: dict,
    dataset: datasets.Dataset,
    input_column: str,
    load_embed: Callable[[], Callable[[dict], np.ndarray]],
    dealt: list[int] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """``cache.embeddings(...)`` split across the processes of this launch; the same array on every process.

    The cache's embedding windows (``cache.embed_windows``) are dealt round-robin to the processes (``dealt``: a
    one-item counter of the windows dealt by earlier calls of the run, so the deal goes on where it stopped and a
    one-window split does not always land on process 0); each embeds its own, the vectors are gathered on the main
    process, which writes them through ``cache.embeddings`` (the one writer: the shards and
    manifest one process writes); the others wait at a barrier, then read the finished cache."""
    if world_size() == 1:
        return cache.embeddings(identity, dataset, input_column, load_embed, **kwargs)
    import torch.distributed as dist

    state = partial_state()
    state.wait_for_everyone()  # nobody writes before every process has looked at the cache
    done = cache.is_complete(identity, dataset._fingerprint)
    todo = [] if done else _shard_starts(cache, identity, dataset)
    state.wait_for_everyone()
    if done:
        return cache.embeddings(identity, dataset, input_column, load_embed, **kwargs)
    result = None
    if not todo:  # every shard on disk, no manifest yet (an interrupted run): the main process finishes it
        if state.is_main_process:
            result = cache.embeddings(identity, dataset, input_column, load_embed, **kwargs)
    else:
        from .cache import embed_window, embed_windows

        embed, batch_size = load_embed(), kwargs.get("batch_size", 32)
        windows = embed_windows(embed, todo, batch_size)  # the windows one process would embed, dealt round-robin
        first = (dealt[0] if dealt else 0) % state.num_processes
        mine = windows[(state.process_index - first) % state.num_processes :: state.num_processes]
        if dealt:
            dealt[0] += len(windows)
        shards = {}
        for window in mine:
            shards.update(embed_window(embed, dataset, input_column, window, batch_size))
        gathered = [None] * state.num_processes if state.is_main_process else None
        dist.gather_object(shards, gathered, dst=0)  # {first row: vectors} of every process, to the main one only
        if state.is_main_process:
            feed = _feeder(dataset, input_column, todo, {s: v for part in gathered for s, v in part.items()})
            result = cache.embeddings(identity, dataset, input_column, lambda: feed, **kwargs)
    state.wait_for_everyone()  # the others wait for the main process's cache writes
    if result is not None:
        return result
    kwargs = {**kwargs, "progress": False, "stats": None}
    return cache.embeddings(identity, dataset, input_column, _refuse_embedding(identity), **kwargs)


def _refuse_embedding(identity: dict) -> Callable[[], Callable[[dict], np.ndarray]]:
    def load() -> Callable[[dict], np.ndarray]:
        raise RuntimeError(
            f"{identity.get('id')}: the main process did not finish the embedding cache; see its error above"
        )

    return load


def rank_note() -> str | None:
    """For logs: 'process i/N' under a multi-process launch, else None."""
    if world_size() == 1:
        return None
    state = partial_state()
    return f"process {state.process_index}/{state.num_processes}"


class LocalAccelerator:
    """The part of ``accelerate.Accelerator`` that ``training.train_head`` uses, for the main process of a
    multi-process launch training heads alone once the others have left: the model on this process's device, the
    whole loader (no per-process split), no DDP wrap (its constructor would broadcast over the departed world)."""

    def __init__(self, device: torch.device):
        self.device = device

    def prepare(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable
    ) -> tuple[nn.Module, torch.optim.Optimizer, _OnDevice]:
        model.to(self.device)  # in place: the optimizer keeps its parameters
        return model, optimizer, _OnDevice(loader, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def unwrap_model(self, model: nn.Module) -> nn.Module:
        return model


class _OnDevice:
    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for batch in self.loader:
            yield [t.to(self.device) for t in batch]

    def __len__(self) -> int:
        return len(self.loader)


def head_accelerator() -> LocalAccelerator | None:
    """What the head phase trains with: None (a fresh ``Accelerator`` per head) in a one-process run, else a
    ``LocalAccelerator`` on the main process's device."""
    return None if world_size() == 1 else LocalAccelerator(partial_state().device)
