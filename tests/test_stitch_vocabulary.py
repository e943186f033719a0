"""Our own code speaks the current config vocabulary (num_anchors / num_epochs / max_seq_length): with the
deprecated aliases removed, a whole ``hf-bridges stitch`` run (overrides, report, best head card) still works."""

from __future__ import annotations

import json
import warnings

import yaml
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv

from hf_bridges.cli import main
from hf_bridges.stitching.config import AnchorSpec, EncoderSpec, TrainingSpec


def test_stitch_run_uses_no_deprecated_alias(tmp_path, monkeypatch):
    encoders = [
        save_tiny_encoder(tmp_path / "enc-a", seed=0, hidden_size=32),
        save_tiny_encoder(tmp_path / "enc-b", seed=1, hidden_size=48),
    ]
    config = tiny_config(encoders, write_topic_csv(tmp_path / "topics.csv"))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    for cls, old in ((EncoderSpec, "max_length"), (AnchorSpec, "num"), (TrainingSpec, "epochs")):
        monkeypatch.delattr(cls, old)  # the alias properties: any use from our code is now an AttributeError
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        code = main(
            [
                "--debug",
                "stitch",
                str(tmp_path / "tiny.yaml"),
                "--output-dir",
                str(out),
                "--epochs",
                "1",
                "--anchors",
                "8",
                "--save-best-head",
                "--quiet",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["training"]["num_epochs"] == 1 and results["config"]["anchors"]["num_anchors"] == 8
    report = (out / "report.md").read_text()
    assert "8 stratified anchors" in report and "1 epochs" in report
    assert "8 stratified anchors, 1 epochs" in (out / "best-head" / "README.md").read_text()
