"""A CSV whose label column has empty cells, through ``hf-bridges stitch`` (issue 11, probe 9).

The first landing embedded everything, then died in ``np.bincount`` with a dtype ``TypeError``; the CLI now fails
before any embedding with one line naming the column, the count of bad rows and an example row.
"""

from __future__ import annotations

import csv
import re

import yaml
from stitch_helpers import save_tiny_encoder, tiny_config

from hf_bridges.cli import main


def test_empty_label_cells_fail_before_embedding_naming_column_count_and_row(tmp_path, capsys):
    rows = [(f"market film vote {i}", i % 2) for i in range(40)] + [(f"stock bank {i}", "") for i in range(3)]
    data = tmp_path / "labels.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body", "topic"])
        writer.writerows(rows)
    config = tiny_config([save_tiny_encoder(tmp_path / "enc", seed=0, hidden_size=32)], str(data))
    config["dataset"]["options"]["test_size"] = 0.5
    path = tmp_path / "stitch.yaml"
    path.write_text(yaml.safe_dump(config))
    cache = tmp_path / "cache"
    argv = ["stitch", str(path), "--output-dir", str(tmp_path / "out"), "--cache-dir", str(cache), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bincount" not in err
    lines = [line for line in err.splitlines() if line.startswith("hf-bridges stitch: error:")]
    assert len(lines) == 1, err
    match = re.search(r"split, column 'topic': (\d+) row\(s\) without a label \(row (\d+): (None|'')\)", lines[0])
    assert match, lines[0]
    empty_rows = int(match.group(1))
    assert empty_rows in (1, 2, 3)  # the 3 empty cells, split between train and test
    assert not cache.exists()  # nothing was embedded
