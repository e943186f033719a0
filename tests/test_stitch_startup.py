"""Issue 21.7: ``hf-bridges stitch`` does not register the Auto classes (a stitch run never loads a bridge through
them; their import was half of a cached run's start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv


@pytest.mark.subprocess
def test_a_stitch_run_never_imports_the_auto_classes(tmp_path):
    encoders = [save_tiny_encoder(tmp_path / "enc-a", seed=0, hidden_size=32)]
    config = tiny_config(encoders, write_topic_csv(tmp_path / "topics.csv"))
    config["methods"] = [{"name": "cosine", "projections": ["cosine"]}]
    config["training"]["num_epochs"] = 1
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    script = (
        "import json, sys; sys.argv[0] = 'hf-bridges'\n"  # what the console script sees
        "from hf_bridges.cli import main\n"
        f"code = main(['stitch', {str(tmp_path / 'run.yaml')!r}, '--output-dir', {str(tmp_path / 'out')!r}, "
        f"'--cache-dir', {str(tmp_path / 'cache')!r}, '--quiet'])\n"
        "print(json.dumps({'code': code, 'auto': 'hf_bridges.auto' in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "auto": False}
    assert (tmp_path / "out" / "results.json").is_file()
