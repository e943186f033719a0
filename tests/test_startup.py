"""`hf-bridges --help`, `--version` and `info` never import the model stack (transformers' PreTrainedModel)."""

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
    main([{arg!r}])
except SystemExit:
    pass
heavy = [m for m in ("transformers.modeling_utils", "hf_bridges.auto", "hf_bridges.modeling.modeling_bridge")
         if m in sys.modules]
print("HEAVY", heavy)
"""


@pytest.mark.parametrize("arg", ["--help", "--version", "info"])
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
