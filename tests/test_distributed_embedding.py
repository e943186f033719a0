"""The stitch embedding under a real 2-process CPU launch (torchrun + gloo) writes the cache one process writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import topic_texts

pytestmark = pytest.mark.multiprocess

WORKER = r"""
import sys
import numpy as np
import datasets
from hf_bridges.stitching.cache import EmbeddingCache
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.distributed import cached_embeddings, partial_state
from hf_bridges.stitching.encoder_kinds import get_encoder_kind

encoder_dir, data_dir, cache_root, out = sys.argv[1:5]
spec = EncoderSpec(name="tiny", id=encoder_dir, batch_size=8)
kind = get_encoder_kind("hf_text")
data = datasets.load_from_disk(data_dir)
stats = {}
values = cached_embeddings(EmbeddingCache(cache_root), kind.identity(spec), data, "text", lambda: kind.load(spec),
                           batch_size=spec.batch_size, stats=stats, progress=False)
rank = partial_state().process_index
np.save(f"{out}/rank{rank}.npy", values)
print("stats", rank, stats)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(nproc: int, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ACCELERATE_USE_CPU": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    if nproc == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            str(script),
            *args,
        ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_write_the_one_process_cache(tiny_encoder_dir, tmp_path):
    import datasets

    from hf_bridges.stitching.cache import SHARD_ROWS

    texts, labels = topic_texts(60, seed=5)  # 300 rows: two cache shards, split unevenly across the processes
    assert len(texts) > SHARD_ROWS
    datasets.Dataset.from_dict({"text": texts, "label": labels}).save_to_disk(tmp_path / "data")
    runs = {}
    for nproc in (2, 1):
        out = tmp_path / f"out{nproc}"
        out.mkdir()
        result = _launch(
            nproc, [tiny_encoder_dir, str(tmp_path / "data"), str(tmp_path / f"cache{nproc}"), str(out)], tmp_path
        )
        assert result.returncode == 0, result.stderr[-6000:]
        runs[nproc] = result
    two = [np.load(tmp_path / "out2" / f"rank{r}.npy") for r in (0, 1)]
    one = np.load(tmp_path / "out1" / "rank0.npy")
    assert one.shape == (300, 32)
    np.testing.assert_array_equal(two[0], two[1])  # every process gets the whole array
    np.testing.assert_allclose(two[0], one, atol=1e-5, rtol=1e-5)
    # the same cache entries (same folder names, same manifest), written once, no staging leftovers
    folders = {n: sorted(p.name for p in (tmp_path / f"cache{n}").iterdir()) for n in (1, 2)}
    assert folders[1] == folders[2] and len(folders[1]) == 1
    entry = tmp_path / "cache2" / folders[2][0]
    # ".lock": the entry's file lock (stitching/cache.py; filelock leaves the file), in the 1-process entry too
    assert sorted(p.name for p in entry.iterdir()) == [".lock", "manifest.json", "shard-00000000", "shard-00000256"]
    assert (entry / "manifest.json").read_text() == (tmp_path / "cache1" / folders[1][0] / "manifest.json").read_text()
    assert "stats 0 {'rows_embedded': 300, 'rows_cached': 0}" in runs[2].stdout
