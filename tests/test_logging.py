"""The hf_bridges logger hierarchy: levels from the API and from HF_BRIDGES_VERBOSITY, records reach caplog."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from hf_bridges import logging as hb_logging


@pytest.fixture(autouse=True)
def restore_level():
    level = hb_logging.get_verbosity()
    yield
    hb_logging.set_verbosity(level)


def test_hierarchy_and_verbosity(caplog):
    log = hb_logging.get_logger("hf_bridges.stitching.runner")
    assert log.name == "hf_bridges.stitching.runner" and hb_logging.get_logger().name == "hf_bridges"
    assert hb_logging.get_logger("stitching.x").name == "hf_bridges.stitching.x"
    hb_logging.set_verbosity_error()
    with caplog.at_level(logging.NOTSET):  # caplog's handler takes everything; the logger level decides
        log.warning("hidden")
        hb_logging.set_verbosity_info()
        log.info("shown")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("hf_bridges")] == ["shown"]
    hb_logging.set_verbosity("debug")
    assert hb_logging.get_verbosity() == logging.DEBUG
    with pytest.raises(ValueError, match="unknown verbosity 'loud'"):
        hb_logging.set_verbosity("loud")


@pytest.mark.parametrize("env, shown", [("info", True), ("error", False), ("", False)])
def test_env_var_sets_the_level_in_a_fresh_process(env, shown):
    script = "from hf_bridges.logging import get_logger; get_logger(__name__).info('hello-info')"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "HF_BRIDGES_VERBOSITY": env},
    )
    assert done.returncode == 0, done.stderr
    assert ("[INFO|hf_bridges.__main__] hello-info" in done.stderr) is shown
