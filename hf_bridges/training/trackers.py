"""JSON-lines and CSV trackers for Accelerate's ``log_with`` (Accelerate ships neither).

They write only on the main process, append (a resumed run continues the same files) and flush every line,
so a crash leaves a readable log.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from accelerate.state import PartialState
from accelerate.tracking import GeneralTracker

from .._io import write_text_atomic


class _FileTracker(GeneralTracker):
    requires_logging_directory = True
    main_process_only = True
    filename = ""

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        # No PartialState() here: these are built before the Accelerator, and an early PartialState() fixes the
        # process group without `cpu=True` (a CPU torchrun then silently becomes N worlds of 1).
        self.run_name = run_name
        self.path = Path(logging_dir) / self.filename

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        if PartialState().is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                self.path.parent / "run_config.json", json.dumps(values, indent=2, sort_keys=True, default=str)
            )


class JSONLinesTracker(_FileTracker):
    """One JSON object per ``accelerator.log`` call: ``{"step": N, ...values}``."""

    name = "json"
    filename = "metrics.jsonl"

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        if not PartialState().is_main_process:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}, default=float) + "\n")


class CSVTracker(_FileTracker):
    """Long format ``step,key,value``: train and eval rows carry different keys, so no fixed header is needed."""

    name = "csv"
    filename = "metrics.csv"

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        if not PartialState().is_main_process:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "key", "value"])
            writer.writerows([step, key, value] for key, value in values.items())


FILE_TRACKERS = {"json": JSONLinesTracker, "csv": CSVTracker}


def build_trackers(names: list[str], run_name: str, logging_dir: str | os.PathLike) -> list:
    """Our file trackers as instances; other names (``tensorboard``, ``wandb``...) go to Accelerate as strings
    (``TrainConfig.check`` refused any that is not installed)."""
    return [FILE_TRACKERS[n](run_name, logging_dir) if n in FILE_TRACKERS else n for n in names]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
