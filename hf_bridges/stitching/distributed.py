"""The stitch embedding across processes and devices: ``accelerate launch -n N hf-bridges stitch ...``.

With one process this is ``EmbeddingCache.embeddings`` unchanged. With N processes (accelerate's ``PartialState``,
set up by ``accelerate launch`` / ``torchrun``) every process embeds a contiguous 1/N of the rows on its own device,
the parts are gathered (``gather_object``), and the main process alone writes the cache from them while the others
wait at a barrier and then read the finished cache: the cache is the one a single process writes (tested with 2
CPU processes in ``tests/test_distributed_embedding.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

ROWS_PER_CALL = 256  # rows per embed call: the hf_text kind sorts them by length into batch_size sub-batches


def world_size() -> int:
    """Processes in this launch, read from the launcher's environment (no process group is created for 1)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def partial_state():
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


def _embed_rows(embed: Callable[[dict], np.ndarray], values: list, column: str, rows_per_call: int) -> np.ndarray:
    parts = [
        np.asarray(embed({column: values[i : i + rows_per_call]}), dtype=np.float32)
        for i in range(0, len(values), rows_per_call)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _feeder(values: list, embeddings: np.ndarray) -> Callable[[dict], np.ndarray]:
    """An embed function that answers from precomputed rows, looked up by input value (same text, same vector)."""
    table = {}
    for value, vector in zip(values, embeddings):
        table.setdefault(value, vector)

    def embed(batch: dict) -> np.ndarray:
        (column,) = batch
        return np.stack([table[value] for value in batch[column]])

    return embed


def cached_embeddings(
    cache, identity: dict, dataset, input_column: str, load_embed: Callable[[], Callable[[dict], np.ndarray]], **kwargs
) -> np.ndarray:
    """``cache.embeddings(...)`` split across the processes of this launch; the same array on every process."""
    if world_size() == 1:
        return cache.embeddings(identity, dataset, input_column, load_embed, **kwargs)
    from accelerate.utils import gather_object

    state = partial_state()
    state.wait_for_everyone()  # nobody writes before every process has looked at the cache
    done = cache.is_complete(identity, dataset._fingerprint)
    state.wait_for_everyone()
    if done:
        return cache.embeddings(identity, dataset, input_column, load_embed, **kwargs)
    result = None
    values = list(dataset[input_column])
    try:
        {values[0]} if values else None
    except TypeError:  # unhashable inputs (images): the main process embeds alone, the others wait
        values = None
    if values is None:
        if state.is_main_process:
            result = cache.embeddings(identity, dataset, input_column, load_embed, **kwargs)
    else:
        with state.split_between_processes(list(range(len(values)))) as rows:
            start = rows[0] if rows else 0
            mine = _embed_rows(load_embed(), values[start : start + len(rows)], input_column, ROWS_PER_CALL)
        parts = gather_object([(start, mine)])  # every process's (first row, embeddings), in rank order
        full = np.concatenate([part for _, part in sorted(parts, key=lambda p: p[0]) if part.size])
        if state.is_main_process:
            result = cache.embeddings(identity, dataset, input_column, lambda: _feeder(values, full), **kwargs)
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
