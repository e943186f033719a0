"""Presets by name at every call site: ``hf-bridges stitch stitch-bbc``, ``hf-bridges train train-tiny``."""

from __future__ import annotations

from pathlib import Path

import pytest

import hf_bridges.stitching as stitching
from hf_bridges.cli import main
from hf_bridges.modeling.registry import UnknownNameError
from hf_bridges.stitching import load_config as load_stitch_config
from hf_bridges.training.config import load_config as load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Stop(Exception):
    """Raised by the replaced run_stitch: the test only checks which config the CLI loaded."""


def test_cli_stitch_takes_a_preset_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = {}

    def capture(config, output_dir, **kwargs):
        seen.update(config=config, output_dir=output_dir)
        raise Stop

    monkeypatch.setattr(stitching, "run_stitch", capture)
    with pytest.raises(Stop):
        main(
            [
                "stitch",
                "stitch-bbc",
                "--output-dir",
                str(tmp_path / "out"),
                "--epochs",
                "3",
                "--anchors",
                "7",
                "--alignment",
                "0",
            ]
        )
    expected = load_stitch_config(CONFIGS / "stitch-bbc.yaml")
    config = seen["config"]
    assert [e.id for e in config.encoders] == [e.id for e in expected.encoders]
    assert config.name == expected.name and config.training.num_epochs == 3 and config.anchors.num_anchors == 7
    assert expected.anchors.alignment == 1000 and config.anchors.alignment == 0


def test_loaders_resolve_names_and_refuse_unknown_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_stitch_config("bbc").name == load_stitch_config(CONFIGS / "stitch-bbc.yaml").name
    assert load_train_config("train-tiny").fingerprint() == load_train_config(CONFIGS / "train-tiny.yaml").fingerprint()
    assert load_train_config("tiny").encoder == load_train_config(CONFIGS / "train-tiny.yaml").encoder
    with pytest.raises(UnknownNameError, match="did you mean 'stitch-bbc'"):
        load_stitch_config("stich-bbc")
    with pytest.raises(UnknownNameError, match="train-tiny"):
        load_train_config("trian-tiny")
    assert main(["stitch", "no-such-preset", "--output-dir", str(tmp_path / "out")]) == 1
