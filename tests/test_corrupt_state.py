"""Corrupted state on disk (issue 11, probes 6 and 8): a truncated embedding-cache shard, a truncated checkpoint on
``--resume latest`` and a corrupt RNG state file are named with the fix, or repaired, instead of raw errors.

Each file is damaged the way a full disk or a killed copy damages it (cut short, or overwritten with garbage).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv

from hf_bridges.stitching import parse_config, run_stitch
from hf_bridges.training.checkpoint import CheckpointError, read_state, resolve_checkpoint, save_checkpoint


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _scores(results: dict) -> list[dict]:
    return [{k: v for k, v in run.items() if k != "train_seconds"} for run in results["runs"]]


def test_truncated_cache_shard_is_reembedded_to_the_clean_result(tmp_path):
    """The first landing died with pyarrow's "Expected to be able to read N bytes" on the next run."""
    encoders = [
        save_tiny_encoder(tmp_path / "enc-a", seed=0, hidden_size=32),
        save_tiny_encoder(tmp_path / "enc-b", seed=1, hidden_size=48),
    ]
    base = tiny_config(encoders, write_topic_csv(tmp_path / "topics.csv"))
    base["methods"] = base["methods"][:2]
    cache_dir = tmp_path / "cache"
    clean = run_stitch(parse_config(copy.deepcopy(base)), tmp_path / "run1", cache_dir=str(cache_dir), quiet=True)
    arrows = sorted(cache_dir.glob("*/shard-*/*.arrow"))
    assert len(arrows) == 4  # 2 encoders x 2 splits, one shard each
    victim = arrows[0]
    _cut(victim)
    with pytest.warns(UserWarning, match=r"embedding cache: 1 corrupted shard\(s\) in .*re-embedding"):
        again = run_stitch(parse_config(copy.deepcopy(base)), tmp_path / "run2", cache_dir=str(cache_dir), quiet=True)
    per_encoder = again["cache"]["per_encoder"]
    assert sum(s["rows_embedded"] for s in per_encoder.values()) > 0  # the broken shard, and only it, re-embedded
    assert sum(s["rows_embedded"] for s in per_encoder.values()) < sum(
        s["rows_embedded"] for s in clean["cache"]["per_encoder"].values()
    )
    assert again["anchors"]["indices"] == clean["anchors"]["indices"]
    assert _scores(again) == _scores(clean)
    # the shard on disk is whole again: a third run reads everything from the cache without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        third = run_stitch(parse_config(copy.deepcopy(base)), tmp_path / "run3", cache_dir=str(cache_dir), quiet=True)
    assert all(s["rows_embedded"] == 0 for s in third["cache"]["per_encoder"].values())


def test_unreadable_rebuild_names_the_folder_to_delete(tmp_path, monkeypatch):
    """If the re-embedded shard cannot be read either (a broken disk), the error names the cache folder."""
    import datasets

    from hf_bridges.stitching.cache import EmbeddingCache
    from hf_bridges.stitching.config import EncoderSpec
    from hf_bridges.stitching.encoder_kinds import HFTextEncoder

    spec = EncoderSpec(id=save_tiny_encoder(tmp_path / "enc", seed=0, hidden_size=32), max_seq_length=16)
    kind = HFTextEncoder()
    data = datasets.Dataset.from_dict({"text": [f"market film vote {i}" for i in range(12)]})
    store = EmbeddingCache(tmp_path / "cache")
    store.embeddings(kind.identity(spec), data, "text", lambda: kind.load(spec), progress=False)
    folder = store.folder(kind.identity(spec), data._fingerprint)
    real_load = datasets.load_from_disk

    def always_broken(path, *args, **kwargs):
        if "shard-" in str(path):
            raise OSError("Expected to be able to read 154400 bytes for message body, got 1200")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_from_disk", always_broken)
    with pytest.warns(UserWarning, match="re-embedding"), pytest.raises(OSError) as caught:
        store.embeddings(kind.identity(spec), data, "text", lambda: kind.load(spec), progress=False)
    assert f"delete {folder} and rerun" in str(caught.value)


@pytest.fixture
def accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _two_checkpoints(out: Path) -> tuple[dict, dict]:
    """Two kept checkpoints of a real Accelerate run (model, optimizer, RNG states); their weights."""
    from accelerate import Accelerator

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    model, _ = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
    weights = []
    for step in (1, 2):
        with torch.no_grad():
            model.weight.add_(1.0)
        save_checkpoint(accelerator, out, step, {"epoch": 0})
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    return weights[0], weights[1]


def _resume(checkpoint: Path) -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 2)
    model, _ = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
    accelerator.load_state(str(checkpoint))
    return model.state_dict()


@pytest.mark.parametrize("damage", ["cut", "zeroed"])
def test_truncated_checkpoint_on_resume_latest_offers_the_other_one(tmp_path, accelerate_state, damage):
    """The first landing raised safetensors' raw ``SafetensorError`` and did not offer the other kept checkpoint."""
    first, _ = _two_checkpoints(tmp_path)
    latest = tmp_path / "checkpoints" / "step-00000002"
    weights = latest / "model.safetensors"
    if damage == "cut":
        _cut(weights)
    else:
        weights.write_bytes(b"\0" * weights.stat().st_size)
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("latest", tmp_path)
    message = str(caught.value)
    other = tmp_path / "checkpoints" / "step-00000001"
    assert f"checkpoint file {weights} is truncated or corrupted" in message
    assert message.endswith(f"--resume {other}")
    # the offered alternative resumes: verified, and Accelerate restores exactly its weights
    found = resolve_checkpoint(message.rsplit("--resume ", 1)[1], tmp_path)
    assert found == other and read_state(found)["step"] == 1
    restored = _resume(found)
    assert all(torch.equal(restored[k], first[k]) for k in first)


@pytest.mark.parametrize("damage", ["cut", "garbage", "flipped"])
def test_corrupt_rng_state_is_named_without_unpickling(tmp_path, accelerate_state, damage):
    """The first landing loaded a corrupt ``random_states_0.pkl`` without a word (or failed inside unpickling); the
    RNG state is now ``rng_state_0.safetensors`` (no pickle), its content checked against the sha256 written with it."""
    _two_checkpoints(tmp_path)
    rng = tmp_path / "checkpoints" / "step-00000002" / "rng_state_0.safetensors"
    assert rng.is_file() and not list(rng.parent.glob("*.pkl"))
    data = bytearray(rng.read_bytes())
    if damage == "cut":
        _cut(rng)
    elif damage == "garbage":
        rng.write_bytes(np.random.default_rng(0).bytes(len(data)))
    else:  # one byte of the torch RNG state flipped: the header still reads, the sha256 does not match
        data[-100] ^= 0xFF
        rng.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("latest", tmp_path)
    message = str(caught.value)
    assert f"checkpoint file {rng} is truncated or corrupted" in message
    assert "--resume " + str(tmp_path / "checkpoints" / "step-00000001") in message
