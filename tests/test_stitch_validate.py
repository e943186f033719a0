"""Stitch inputs are validated before any embedding, naming the column, the count and an example (probe 9)."""

from __future__ import annotations

import csv

import pytest
from stitch_helpers import save_tiny_encoder, tiny_config

from hf_bridges.stitching import parse_config, run_stitch
from hf_bridges.stitching.config import ConfigError


def _csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body", "topic"])
        writer.writerows(rows)
    return str(path)


@pytest.mark.parametrize(
    "broken, message",
    [
        (("market film vote", ""), r"column 'topic': \d+ row\(s\) without a label \(row \d+"),
        (("", 1), r"column 'body': \d+ empty text\(s\)"),
    ],
)
def test_bad_rows_are_named_before_embedding(tmp_path, broken, message):
    rows = [(f"market film vote {i}", i % 2) for i in range(40)] + [broken] * 3
    config = tiny_config([save_tiny_encoder(tmp_path / "enc", seed=0, hidden_size=32)], _csv(tmp_path / "d.csv", rows))
    config["dataset"]["options"]["test_size"] = 0.5
    with pytest.raises(ConfigError, match=message):
        run_stitch(parse_config(config), tmp_path / "out", cache_dir=str(tmp_path / "cache"), quiet=True)
    assert not (tmp_path / "cache").exists()
