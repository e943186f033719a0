"""The ``hf-bridges`` command line as a user meets it (round 11): each probe that went wrong, through ``main``."""

from __future__ import annotations

import pytest

from hf_bridges.cli import main


def _error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"hf-bridges {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("module", ["hf_bridges.cli", "hf_bridges.training"])
def test_train_overrides_after_resume_are_applied(tmp_path, capsys, module):
    """``train CONFIG --resume latest output_dir=X`` was "unrecognized arguments: output_dir=X" (exit 2)."""
    out = tmp_path / "run"
    if module == "hf_bridges.cli":
        assert main(["train", "train-tiny", "--resume", "latest", f"output_dir={out}", "max_steps=2"]) == 1
        line = _error_line(capsys, "train")
    else:
        from hf_bridges.training.run import main as training_main

        assert training_main(["train-tiny", "--resume", "latest", f"output_dir={out}", "max_steps=2"]) == 1
        line = capsys.readouterr().err
    assert f"no complete checkpoint under {out / 'checkpoints'}" in line  # the override reached the run


def test_a_stray_argument_is_still_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "train-tiny", "--resume", "latest", "stray"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err
