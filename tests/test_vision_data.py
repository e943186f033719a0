"""Image dataset loaders and the image encoder kinds' up-front checks (no models loaded)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from hf_bridges.data.vision import fashion_mnist, images_dataset, read_idx


def write_idx(path, array: np.ndarray, truncate: int = 0) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(data[: len(data) - truncate])


def test_idx_files_and_a_local_fashion_mnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 6)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    assert read_idx(tmp_path / "t10k-images-idx3-ubyte.gz").shape == (6, 28, 28)
    data = fashion_mnist(root=str(tmp_path))
    assert len(data["train"]) == 12 and len(data["test"]) == 6
    assert data["train"].features["label"].names[0] == "T-shirt/top"
    first = np.asarray(data["test"].with_format("numpy")[0]["image"])
    np.testing.assert_array_equal(first, read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")[0])
    # same content -> same fingerprint, so the stitching embedding cache is reused across runs
    assert fashion_mnist(root=str(tmp_path))["train"]._fingerprint == data["train"]._fingerprint


def test_bad_dataset_files_fail_clearly(tmp_path):
    with pytest.raises(OSError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(root=str(tmp_path))
    write_idx(tmp_path / "bad.gz", np.zeros((4, 28, 28)), truncate=10)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "text.gz")
    dataset = images_dataset(np.zeros((3, 5, 7), np.uint8), np.array([0, 1, 1]), ["a", "b"])
    assert np.asarray(dataset.with_format("numpy")[0]["image"]).shape == (5, 7)


def test_image_encoder_kinds_check_names_up_front():
    from hf_bridges.stitching import parse_config
    from hf_bridges.stitching.config import ConfigError
    from hf_bridges.stitching.encoder_kinds import get_encoder_kind

    config = parse_config(
        {
            "dataset": {"name": "fashion_mnist", "text_column": "image"},
            "encoders": [{"id": "efficientnet-lite9", "kind": "module_image"}],
            "methods": [{"name": "cosine"}],
        }
    )
    with pytest.raises(ConfigError, match="unknown module encoder.*did you mean 'efficientnet-lite"):
        get_encoder_kind("module_image").identity(config.encoders[0])
    assert get_encoder_kind("hf_image").input_column == "image"
