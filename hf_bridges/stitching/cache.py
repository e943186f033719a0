"""On-disk embedding cache: Arrow shards written with ``datasets``, keyed by what changes the embeddings.

The key covers the encoder identity (id, resolved revision, pooling, max length, prefix, kind; the backend and its
ONNX file when it is not torch) and the dataset split's fingerprint, nothing about heads, so new heads re-embed
nothing. Shards are written to a temporary
folder and renamed into place; a run that is interrupted resumes from the shards already written. A file lock per
entry lets concurrent runs share one cache (the second waits, then reuses); corrupted shards are re-embedded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import fault_point, write_text_atomic
from .validate import check_shard_widths

if TYPE_CHECKING:
    import datasets

SHARD_ROWS = 256
CACHE_FORMAT = 1
# Rows per embed call for an embed function that sorts its rows by length itself (``embed.sorts_rows``, the hf_text
# kind): its sort then spans this many rows (16 shards) instead of one batch, so short texts are batched with texts
# of their own length (issue 21: a 32-row window computed 3.1x the real tokens on short texts). Shards are still
# written one by one after each window, so an interrupted run keeps every finished window.
WINDOW_ROWS = 16 * SHARD_ROWS


def default_cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_bridges" / "embeddings"


def cache_key(identity: dict, dataset_fingerprint: str) -> str:
    payload = {"encoder": identity, "dataset": dataset_fingerprint, "format": CACHE_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def embed_windows(embed: Callable[[dict], np.ndarray], todo: list[int], batch_size: int) -> list[list[int]]:
    """The missing shards' starts (``todo``) grouped into the windows one process embeds them in: ``WINDOW_ROWS``
    rows for an embed that sorts its rows itself, else a shard. A multi-process run deals these same windows, so
    its vectors are bit for bit one process's."""
    per_call = WINDOW_ROWS if getattr(embed, "sorts_rows", False) else batch_size
    shards = max(per_call // SHARD_ROWS, 1)
    return [todo[i : i + shards] for i in range(0, len(todo), shards)]


def embed_window(
    embed: Callable[[dict], np.ndarray],
    dataset: datasets.Dataset,
    column: str,
    window: list[int],
    batch_size: int,
    on_rows: Callable[[int], Any] | None = None,
) -> dict[int, np.ndarray]:
    """``{first row: vectors}`` of the shards of one window, in the calls one process makes."""
    n = len(dataset)
    per_call = WINDOW_ROWS if getattr(embed, "sorts_rows", False) else batch_size
    rows = dataset.select([i for start in window for i in range(start, min(start + SHARD_ROWS, n))])
    parts = []
    for b in range(0, len(rows), per_call):
        batch = rows[b : b + per_call]
        parts.append(np.asarray(embed({column: batch[column]}), dtype=np.float32))
        if on_rows is not None:
            on_rows(len(batch[column]))
    embedded, offset, shards = np.concatenate(parts), 0, {}
    for start in window:
        shards[start] = embedded[offset : offset + min(SHARD_ROWS, n - start)]
        offset += len(shards[start])
    return shards


@dataclass
class EmbeddingCache:
    root: Path

    def folder(self, identity: dict, dataset_fingerprint: str) -> Path:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(identity.get("id", "encoder")))[-60:]
        return Path(self.root) / f"{label}-{cache_key(identity, dataset_fingerprint)}"

    def is_complete(self, identity: dict, dataset_fingerprint: str) -> bool:
        return (self.folder(identity, dataset_fingerprint) / "manifest.json").is_file()

    def embeddings(
        self,
        identity: dict,
        dataset: datasets.Dataset,
        input_column: str,
        load_embed: Callable[[], Callable[[dict], np.ndarray]],
        desc: str = "embedding",
        batch_size: int = 32,
        stats: dict | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """(n, dim) float32 embeddings of ``dataset[input_column]``; computes only the shards not on disk.

        ``load_embed`` is called lazily, so a fully cached split never loads the encoder. ``stats`` (optional)
        receives ``rows_embedded`` / ``rows_cached``.
        """
        from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        was_disabled = are_progress_bars_disabled()
        disable_progress_bars()  # one bar per shard save/load would drown the embedding bar
        try:
            return self._embeddings(identity, dataset, input_column, load_embed, desc, batch_size, stats, progress)
        finally:
            if not was_disabled:
                enable_progress_bars()

    def _embeddings(self, identity, dataset, input_column, load_embed, desc, batch_size, stats, progress):
        from filelock import FileLock

        folder = self.folder(identity, dataset._fingerprint)
        folder.mkdir(parents=True, exist_ok=True)
        # One lock per entry: a second run sharing this cache waits here, then finds the shards and reuses them.
        with FileLock(str(folder / ".lock")):
            return self._embed_locked(
                folder, identity, dataset, input_column, load_embed, desc, batch_size, stats, progress
            )

    @staticmethod
    def _write_shard(folder: Path, identity: dict, start: int, values: np.ndarray) -> None:
        """One shard, staged in a temporary folder and renamed into place (never half-written)."""
        import datasets

        if not np.isfinite(values).all():
            raise ValueError(f"{identity.get('id')}: NaN/inf embeddings in rows {start}..; not cached")
        shard = datasets.Dataset.from_dict(
            {"row": np.arange(start, start + len(values)), "embedding": values},
            features=datasets.Features(
                {
                    "row": datasets.Value("int64"),
                    "embedding": datasets.List(datasets.Value("float32"), length=values.shape[1]),
                }
            ),
        )
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp-") as tmp:
            shard.save_to_disk(os.path.join(tmp, "shard"))
            fault_point("cache.shard")
            os.replace(os.path.join(tmp, "shard"), folder / f"shard-{start:08d}")

    def _embed_locked(self, folder, identity, dataset, input_column, load_embed, desc, batch_size, stats, progress):
        import datasets
        from tqdm.auto import tqdm

        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".tmp-*"):  # staging folders of killed runs (we hold the lock: nobody writes)
            shutil.rmtree(stale, ignore_errors=True)
        n = len(dataset)
        starts = list(range(0, n, SHARD_ROWS))
        todo = [s for s in starts if not (folder / f"shard-{s:08d}").is_dir()]
        stats = stats if stats is not None else {}
        stats["rows_embedded"] = stats.get("rows_embedded", 0)
        stats["rows_cached"] = stats.get("rows_cached", 0) + n - sum(min(SHARD_ROWS, n - s) for s in todo)
        if todo:
            embed = load_embed()
            with tqdm(
                total=n,
                initial=n - sum(min(SHARD_ROWS, n - s) for s in todo),
                desc=desc,
                unit="row",
                leave=False,
                disable=not progress,
            ) as bar:
                for window in embed_windows(embed, todo, batch_size):
                    for start, values in embed_window(
                        embed, dataset, input_column, window, batch_size, bar.update
                    ).items():
                        self._write_shard(folder, identity, start, values)
                        stats["rows_embedded"] += len(values)
        parts, broken = [], []
        for s in starts:
            shard = folder / f"shard-{s:08d}"
            try:
                part = datasets.load_from_disk(str(shard)).with_format("numpy")
                parts.append((np.asarray(part["row"]), np.asarray(part["embedding"], dtype=np.float32)))
            except Exception as error:  # truncated / corrupted Arrow file: drop the shard, embed it again
                broken.append((shard, error))
        if broken:
            for shard, _ in broken:
                shutil.rmtree(shard, ignore_errors=True)
            (folder / "manifest.json").unlink(missing_ok=True)
            if stats.get("_retried"):
                raise OSError(
                    f"embedding cache shard {broken[0][0]} is unreadable even after re-embedding "
                    f"({broken[0][1]}); delete {folder} and rerun"
                )
            warnings.warn(
                f"embedding cache: {len(broken)} corrupted shard(s) in {folder} (first: {broken[0][0].name}: "
                f"{type(broken[0][1]).__name__}); re-embedding them",
                UserWarning,
                stacklevel=4,
            )
            stats["_retried"] = True
            stats["rows_cached"] -= n
            try:
                return self._embed_locked(
                    folder, identity, dataset, input_column, load_embed, desc, batch_size, stats, progress
                )
            finally:
                stats.pop("_retried", None)
        check_shard_widths(folder, [v for _, v in parts])  # another encoder's shard: removed, named
        rows = np.concatenate([r for r, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
        values = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, 0), dtype=np.float32)
        if values.shape[0] != n or not np.array_equal(rows, np.arange(n)):
            shutil.rmtree(folder)
            raise OSError(f"embedding cache {folder} was inconsistent and has been removed; rerun to rebuild it")
        manifest = {
            "identity": identity,
            "dataset_fingerprint": dataset._fingerprint,
            "rows": n,
            "dim": int(values.shape[1]),
            "format": CACHE_FORMAT,
        }
        write_text_atomic(folder / "manifest.json", json.dumps(manifest, indent=2))
        return values
