"""Issue 19 item 4: the documented multi-process ``hf-bridges stitch`` runs end to end and writes the results of a
one-process run.

Real launches: ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m hf_bridges.cli stitch ...`` (gloo on CPU) and,
once, the same through ``accelerate launch``, against ``python -m hf_bridges.cli stitch ...`` with one process, on two
tiny random encoders saved like Hub models and a csv of mixed-length texts (the train split spans two cache shards,
so each process embeds one; the test split is one shard, so one process embeds it and the other nothing).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import topic_texts
from stitch_helpers import save_tiny_encoder, tiny_config

pytestmark = [pytest.mark.multiprocess, pytest.mark.subprocess]
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_csv(path: Path) -> str:
    """360 rows of 3 lengths (padding differs between batches: a wrong batch split shows in the vectors)."""
    rows = []
    for words, seed in ((3, 1), (6, 2), (12, 3)):
        texts, labels = topic_texts(24, seed=seed, topic_words=words)
        rows += zip(texts, labels)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body", "topic"])
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def stitch_setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mp-stitch")
    encoders = [save_tiny_encoder(root / f"enc{i}", seed=i, hidden_size=h) for i, h in ((0, 32), (1, 48))]
    config = tiny_config(encoders, _write_csv(root / "data.csv"), seeds=[0])
    config["best_head"] = {"method": "best"}
    (root / "stitch.yaml").write_text(yaml.safe_dump(config))
    return root


def _stitch(root: Path, name: str, launcher: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ACCELERATE_USE_CPU": "1",
        "PYTHONPATH": str(ROOT),
        "HF_DATASETS_CACHE": str(root / "datasets-cache"),
    }
    args = [
        "stitch",
        str(root / "stitch.yaml"),
        "--output-dir",
        str(root / name),
        "--cache-dir",
        str(root / f"cache-{name}"),
    ]
    port = str(_free_port())
    prefix = {
        "one": [sys.executable, "-m", "hf_bridges.cli"],
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                     "127.0.0.1", "--master_port", port, "-m", "hf_bridges.cli"],
        "accelerate": [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                       "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", port, "-m", "hf_bridges.cli"],
    }[launcher]  # fmt: skip
    return subprocess.run([*prefix, *args, "--quiet"], env=env, capture_output=True, text=True, timeout=600)


def _cells(results: dict) -> dict:
    """Every cell of every run (accuracy, macro-F1, subspace choice, latent similarity), all but the wall time."""
    return {(r["method"], r["seed"], r["train"], r["test"]): {**r, "train_seconds": None} for r in results["runs"]}


def _run(root: Path, name: str, launcher: str) -> tuple[dict, subprocess.CompletedProcess]:
    done = _stitch(root, name, launcher)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-6000:])
    return json.loads((root / name / "results.json").read_text()), done


@pytest.fixture(scope="module")
def one_process(stitch_setup):
    return _run(stitch_setup, "one", "one")[0]


def _same_as_one_process(results: dict, one: dict, root: Path, name: str) -> None:
    assert _cells(results) == _cells(one)  # exactly
    assert sum("accuracy" in r for r in one["runs"]) >= 8
    assert results["summary"] == one["summary"]
    assert results["anchors"] == one["anchors"]
    assert results["best_head"]["method"] == one["best_head"]["method"]
    assert results["best_head"]["seed"] == one["best_head"]["seed"]
    # the cache the two processes wrote holds the vectors one process embeds, bit for bit
    import datasets

    shards = {
        n: sorted(p.relative_to(root / f"cache-{n}") for p in (root / f"cache-{n}").glob("*/shard-*"))
        for n in (name, "one")
    }
    assert shards[name] == shards["one"] and len(shards["one"]) == 6  # 2 encoders x (2 train + 1 test shards)
    for shard in shards["one"]:
        a, b = (
            np.asarray(datasets.load_from_disk(str(root / f"cache-{n}" / shard))["embedding"]) for n in (name, "one")
        )
        np.testing.assert_array_equal(a, b)


def test_two_processes_torchrun_write_the_one_process_results(stitch_setup, one_process):
    results, done = _run(stitch_setup, "torchrun", "torchrun")
    _same_as_one_process(results, one_process, stitch_setup, "torchrun")
    assert results["processes"] == 2 and one_process["processes"] == 1
    assert done.stdout.count("results:") == 1  # rank 0 prints the run; rank 1 says it only embedded
    assert "process 1/2 embedded its shards" in done.stdout


@pytest.mark.slow
def test_two_processes_accelerate_launch_write_the_one_process_results(stitch_setup, one_process):
    results, _ = _run(stitch_setup, "accelerate", "accelerate")
    _same_as_one_process(results, one_process, stitch_setup, "accelerate")
