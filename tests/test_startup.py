"""`hf-bridges --help`, `--version` and `info` never import the model stack (transformers' PreTrainedModel);
`--help` (also a subcommand's) and `--version` do not even import torch: they build the parser and print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

PROBE = r"""
import sys
sys.argv = ["hf-bridges"]
from hf_bridges.cli import main
try:
    main({arg!r}.split())
except SystemExit:
    pass
heavy = [m for m in ("transformers.modeling_utils", "hf_bridges.auto", "hf_bridges.modeling.modeling_bridge")
         if m in sys.modules]
print("HEAVY", heavy)
print("TORCH", "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    "arg", ["--help", "--version", "info", "train --help", "stitch --help", "head --help", "offline-seed --help"]
)
def test_light_commands_skip_the_model_stack(arg):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.replace("{arg!r}", repr(arg))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout, out.stdout[-2000:]
    if arg != "info":  # info lists the registries, whose entries are torch functions and modules
        assert "TORCH False" in out.stdout, out.stdout[-2000:]
