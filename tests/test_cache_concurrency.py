"""Two real `run_stitch` processes sharing one embedding cache: both finish, with the results of a lone run.

Issue 11, probe 1: on the old code the second process to rename a shard died with ``[Errno 39] Directory not empty``.
The children start together (a file barrier) and embed slowly (a short sleep per batch) so that both are inside
the embedding of the same cache entry at once; with the per-entry file lock the second waits and reuses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv

from hf_bridges.stitching import parse_config, run_stitch

CHILD = r"""
import json, os, sys, time
from pathlib import Path
config_path, out, cache, barrier = sys.argv[1:5]
from hf_bridges.stitching import parse_config, run_stitch
from hf_bridges.stitching.encoder_kinds import HFTextEncoder
original = HFTextEncoder.load
def slow_load(self, spec):
    embed = original(self, spec)
    def slow(batch):
        time.sleep(0.05)
        return embed(batch)
    return slow
HFTextEncoder.load = slow_load
Path(barrier, f"ready-{os.getpid()}").touch()
while len(list(Path(barrier).iterdir())) < 2:
    time.sleep(0.01)
results = run_stitch(parse_config(json.loads(Path(config_path).read_text())), out, cache_dir=cache, quiet=True)
print(json.dumps({"runs": results["runs"], "cache": results["cache"]["per_encoder"]}))
"""


def _scores(runs):
    return [{k: v for k, v in run.items() if not k.endswith("_seconds")} for run in runs]


@pytest.mark.multiprocess
def test_two_stitch_runs_share_one_cache(tmp_path):
    encoders = [
        save_tiny_encoder(tmp_path / "enc-a", seed=0, hidden_size=32),
        save_tiny_encoder(tmp_path / "enc-b", seed=1, hidden_size=48),
    ]
    config = tiny_config(
        encoders,
        write_topic_csv(tmp_path / "topics.csv", n_per_class=40),
        methods=[{"name": "cosine", "projections": ["cosine"]}],
    )
    config["training"]["batch_size"] = 8
    config_path = tmp_path / "config.json"
    for spec in config["encoders"]:
        spec["batch_size"] = 4
    config_path.write_text(json.dumps(config))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(config_path),
                str(tmp_path / f"out{i}"),
                str(tmp_path / "shared-cache"),
                str(barrier),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (_out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    first, second = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    lone = run_stitch(
        parse_config(json.loads(config_path.read_text())),
        tmp_path / "lone",
        cache_dir=str(tmp_path / "lone-cache"),
        quiet=True,
    )
    # every row was embedded exactly once across the two processes; the other one reused the entry
    for name in ("enc0", "enc1"):
        embedded = first["cache"][name]["rows_embedded"] + second["cache"][name]["rows_embedded"]
        assert embedded == lone["cache"]["per_encoder"][name]["rows_embedded"], (first["cache"], second["cache"])
    assert _scores(first["runs"]) == _scores(second["runs"]) == _scores(lone["runs"])
    assert not list((tmp_path / "shared-cache").glob("*/.tmp-*"))
