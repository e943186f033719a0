"""Plain nn.Module encoders and precomputed features: same head, same save/load, clear errors."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch import nn

from hf_bridges import (
    BridgeConfig,
    BridgeForSequenceClassification,
    InputError,
    ModuleBridgeForClassification,
    ModuleEncoder,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(seed: int, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, width)).eval()


class Rotated(nn.Module):
    """``base`` followed by an orthogonal map and a scale: what cosine similarity is invariant to."""

    def __init__(self, base: nn.Module, width: int, scale: float = 3.0):
        super().__init__()
        self.base = base
        q, _ = torch.linalg.qr(torch.randn(width, width, generator=torch.Generator().manual_seed(5)))
        self.register_buffer("q", q * scale)

    def forward(self, x):
        return self.base(x) @ self.q


class Returns(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.lin = nn.Linear(10, 8)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.lin(x))


@pytest.fixture()
def anchors():
    return torch.randn(12, 10, generator=torch.Generator().manual_seed(0))


@pytest.fixture()
def x():
    return torch.randn(6, 10, generator=torch.Generator().manual_seed(1))


def test_module_bridge_embeds_with_the_module(anchors, x):
    module = mlp(0)
    bridge = ModuleBridgeForClassification.from_module(module, anchors=anchors, num_labels=3).eval()
    assert bridge.config.features_dim == 16 and bridge.config.anchor_input_shape == [10]
    torch.testing.assert_close(bridge.anchor_embeddings, module(anchors))
    out = bridge(inputs=x, labels=torch.tensor([0, 1, 2, 0, 1, 2]), output_representations=True)
    torch.testing.assert_close(out.embeddings, module(x))
    assert out.logits.shape == (6, 3) and out.loss.ndim == 0
    # features= gives the same result as inputs= (precomputed embeddings)
    torch.testing.assert_close(bridge(features=module(x)).logits, out.logits)


def test_wrapping_keeps_the_module_weights(anchors):
    """transformers' post_init must not re-initialise a (pretrained) plain module: its weights stay as they were."""
    module = nn.Sequential(nn.Linear(10, 16), nn.LayerNorm(16), nn.Linear(16, 8))
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(0.123)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    ModuleBridgeForClassification.from_module(module, anchors=anchors, num_labels=2)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_save_load_without_encoder_weights(anchors, x, tmp_path):
    module = mlp(0)
    bridge = ModuleBridgeForClassification.from_module(module, anchors=anchors, num_labels=3).eval()
    bridge.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert "anchors.inputs" in keys and not any(k.startswith("encoder.") for k in keys)
    expected = bridge(inputs=x).logits
    with_module = ModuleBridgeForClassification.from_pretrained(tmp_path, module=module).eval()
    torch.testing.assert_close(with_module(inputs=x).logits, expected)
    features_only = ModuleBridgeForClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(features_only(features=module(x)).logits, expected)
    with pytest.raises(ValueError, match="no encoder"):
        features_only(inputs=x)


def test_head_stitches_onto_a_rotated_and_rescaled_module(anchors, x, tmp_path):
    """Cosine relative spaces are invariant to rotation + scale: the same relative head (no aligned component)
    gives the same logits zero-shot."""
    base = mlp(0)
    bridge = ModuleBridgeForClassification.from_module(
        base,
        anchors=anchors,
        num_labels=3,
        projections=["cosine"],
        head_config={"aligned": False, "abs_transform": "none"},
    )
    bridge.eval().save_pretrained(tmp_path)
    other = ModuleBridgeForClassification.from_pretrained(tmp_path, module=Rotated(base, 16)).eval()
    assert not torch.allclose(other.anchor_embeddings, bridge.anchor_embeddings)
    torch.testing.assert_close(other(inputs=x).logits, bridge(inputs=x).logits, atol=1e-5, rtol=1e-4)
    # a different width works too (the relative space has k dims whatever the encoder's width)
    other.attach_encoder(mlp(1, width=24))
    assert other.config.features_dim == 24 and other(inputs=x).logits.shape == (6, 3)


def test_default_head_fits_its_map_when_a_module_is_attached(tmp_path):
    """The default (aligned) head on a module bridge: attach_encoder fits the translation from the new module into
    the training module's space on the anchors alone; an orthogonal map x scale is recovered (translated relative
    space, predictions kept), a second attach maps straight into the training space, an unrelated module scores
    lower, and a bridge without the training encoder's anchor embeddings refuses to guess."""
    torch.manual_seed(0)
    base = mlp(0)
    anchors = torch.randn(64, 10, generator=torch.Generator().manual_seed(2))
    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(3))
    bridge = ModuleBridgeForClassification.from_module(base, anchors=anchors, num_labels=3).eval()
    assert bridge.config.head.aligned and bridge.head.aligned_dim == 16
    with torch.no_grad():
        for p in bridge.head.parameters():  # a head with non-trivial weights, so agreement is not a coincidence
            p.add_(torch.randn_like(p) * 0.5)
        expected = bridge(inputs=x).logits.argmax(-1)
    bridge.save_pretrained(tmp_path)
    rotated = ModuleBridgeForClassification.from_pretrained(tmp_path, module=Rotated(base, 16)).eval()
    alignment = rotated.config.head.alignment
    assert alignment["fit"] > 0.99 and alignment["relative_space"] == "translated"
    with torch.no_grad():
        assert (rotated(inputs=x).logits.argmax(-1) == expected).float().mean() >= 0.97
    rotated.attach_encoder(Rotated(Rotated(base, 16), 16))  # again: mapped into the training module's space
    with torch.no_grad():
        assert (rotated(inputs=x).logits.argmax(-1) == expected).float().mean() >= 0.97
    # features only: the other module's embeddings of the anchors fit the same map
    features_only = ModuleBridgeForClassification.from_pretrained(tmp_path).eval()
    other = Rotated(base, 16)
    with torch.no_grad():
        info = features_only.stitch_anchor_embeddings(other(anchors))
        assert info["fit"] > 0.99
        assert (features_only(features=other(x)).logits.argmax(-1) == expected).float().mean() >= 0.97
    unrelated = ModuleBridgeForClassification.from_pretrained(tmp_path, module=mlp(7))
    assert unrelated.config.head.alignment["stitch_score"] < alignment["stitch_score"] - 0.2
    features_only = ModuleBridgeForClassification.from_pretrained(tmp_path)
    features_only.anchors.is_fresh.fill_(False)
    with pytest.raises(ValueError, match="anchor embeddings of the encoder it was trained on"):
        features_only.attach_encoder(Rotated(base, 16))


def test_plain_module_output_errors(anchors):
    with pytest.raises(ValueError, match=r"returned a tuple .*output=0"):
        ModuleBridgeForClassification.from_module(Returns(lambda z: (z, z)), anchors=anchors, num_labels=2)
    with pytest.raises(ValueError, match=r"\(batch, dim\).*got shape \(2, 8, 1\).*pooling='mean'"):
        ModuleBridgeForClassification.from_module(Returns(lambda z: z[:, :, None]), anchors=anchors, num_labels=2)
    with pytest.raises(ValueError, match="keys"):
        ModuleBridgeForClassification.from_module(Returns(lambda z: {"h": z}), anchors=anchors, num_labels=2)
    with pytest.raises(ValueError, match="floating point"):
        ModuleBridgeForClassification.from_module(Returns(lambda z: z.long()), anchors=anchors, num_labels=2)
    with pytest.raises(ValueError, match="at least 2 anchor"):
        ModuleBridgeForClassification.from_module(mlp(0), anchors=anchors[:1], num_labels=2)
    with pytest.raises(TypeError, match="nn.Module"):
        ModuleEncoder(lambda z: z)
    # the fixes the messages suggest work
    picked = ModuleBridgeForClassification.from_module(
        Returns(lambda z: (z, z * 2)), anchors=anchors, num_labels=2, output=1
    )
    assert picked.config.features_dim == 8
    keyed = ModuleBridgeForClassification.from_module(
        Returns(lambda z: {"h": z}), anchors=anchors, num_labels=2, output="h"
    )
    assert keyed.config.features_dim == 8
    pooled = ModuleEncoder(Returns(lambda z: z.view(-1, 2, 2, 2)), pooling="mean")
    assert pooled(anchors).shape == (12, 2)


def test_bad_inputs_to_a_module_bridge(anchors):
    bridge = ModuleBridgeForClassification.from_module(mlp(0), anchors=anchors, num_labels=2)
    with pytest.raises(ValueError, match="pass inputs"):
        bridge()
    with pytest.raises(ValueError, match="empty batch"):
        bridge(inputs=torch.zeros(0, 10))
    with pytest.raises(ValueError, match="width 5 differs"):
        bridge(features=torch.zeros(3, 5))


def test_inputs_of_another_shape_than_the_anchors_name_both_shapes(anchors):
    """The module's own 'mat1 and mat2 shapes cannot be multiplied' becomes an InputError naming the shapes; a
    failure on inputs of the anchors' shape (a bug in the module) passes through as the module raised it."""
    bridge = ModuleBridgeForClassification.from_module(mlp(0), anchors=anchors, num_labels=2)
    with pytest.raises(InputError, match=r"shape \(3, 7\).*anchors are inputs of shape \(N, 10\)") as caught:
        bridge(inputs=torch.zeros(3, 7))
    assert isinstance(caught.value.__cause__, RuntimeError)

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("a bug in the module")

    broken = ModuleBridgeForClassification.from_module(mlp(0), anchors=anchors, num_labels=2)
    broken.encoder.module = Broken()
    with pytest.raises(RuntimeError, match="a bug in the module") as raised:
        broken(inputs=torch.zeros(3, 10))
    assert not isinstance(raised.value, InputError)


def test_features_only_bridge_round_trips_without_features_dim(tmp_path):
    """BridgeConfig(encoder=None): the anchors define the width, so save/load works without features_dim (for a
    relative head; the default head's aligned component needs the width up front: see the next assertion)."""
    with pytest.raises(ValueError, match="aligned head needs"):
        BridgeForSequenceClassification(BridgeConfig(encoder=None, modality="features", num_anchors=8, num_labels=3))
    config = BridgeConfig(encoder=None, modality="features", num_anchors=8, num_labels=3, head={"aligned": False})
    bridge = BridgeForSequenceClassification(config).eval()
    anchors = torch.randn(8, 16)
    bridge.set_anchor_embeddings(anchors)
    assert bridge.config.features_dim == 16
    bridge.save_pretrained(tmp_path)
    loaded = BridgeForSequenceClassification.from_pretrained(tmp_path).eval()
    feats = torch.randn(4, 16)
    torch.testing.assert_close(loaded(features=feats).logits, bridge(features=feats).logits)
    with pytest.raises(ValueError, match="no encoder"):
        loaded(input_ids=torch.ones(2, 3, dtype=torch.long))


def test_module_alignment_inputs_fit_the_map_of_an_attached_module():
    base = mlp(0)
    g = torch.Generator().manual_seed(2)
    anchors, extra = torch.randn(8, 10, generator=g), torch.randn(40, 10, generator=g)  # 8 anchors < 16 dims
    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(3))
    bridge = ModuleBridgeForClassification.from_module(base, anchors=anchors, alignment_inputs=extra, num_labels=3)
    assert bridge.config.num_anchors == 48 and bridge.head.relative_anchors == 8
    assert torch.equal(bridge.anchors.inputs, torch.cat([anchors, extra]))
    with torch.no_grad():
        for p in bridge.head.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        expected = bridge.eval()(inputs=x).logits.argmax(-1)
    info = bridge.attach_encoder(Rotated(base, 16)).config.head.alignment
    assert info["pairs"] == 48 and info["fit"] > 0.99  # 48 pairs pin down a 16 x 16 map (8 alone: fit 0.43, 64 % kept)
    with torch.no_grad():
        assert (bridge(inputs=x).logits.argmax(-1) == expected).float().mean() >= 0.97


def test_save_head_of_a_module_bridge_says_where_its_head_goes(anchors, tmp_path):
    """It said "this model has no raw anchor inputs", a plain ValueError, of a bridge that holds them (as tensors)."""
    from hf_bridges import HfBridgesError

    bridge = ModuleBridgeForClassification.from_module(mlp(0), anchors=anchors, num_labels=3)
    with pytest.raises(HfBridgesError, match=r"ModuleBridgeForClassification keeps its head .* save_pretrained"):
        bridge.save_head(tmp_path / "head")
    assert not (tmp_path / "head").exists()
