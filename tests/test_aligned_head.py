"""The default head (aligned product): translation fits, the aligned component, attach-time choice, synthetic maps."""
from __future__ import annotations

import pytest
import torch

from hf_bridges.heads.compatibility import align_head
from hf_bridges.modeling.head import LEGACY_DEFAULTS, HeadConfig, RelativeProductHead
from hf_bridges.modeling.translation import fit_affine, fit_orthogonal, fit_translation, standardise

D, K, CLASSES = 24, 120, 4


def _data(seed: int = 0, n: int = 1200):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(CLASSES, D, generator=g, dtype=torch.float64) * 1.2
    scales = torch.rand(D, generator=g, dtype=torch.float64) * 2 + 0.3
    y = torch.arange(n) % CLASSES
    x = means[y] + torch.randn(n, D, generator=g, dtype=torch.float64) * scales + 5.0  # off-centre, anisotropic
    return x, y


def _train(config: HeadConfig, x, y, anchors, epochs: int = 30) -> RelativeProductHead:
    torch.manual_seed(0)
    head = RelativeProductHead.from_config(config, K, CLASSES, embedding_dim=D)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    xf, af = x.float(), anchors.float()
    head.train()
    for _ in range(epochs):
        for i in range(0, len(xf), 128):
            loss = torch.nn.functional.cross_entropy(head(xf[i:i + 128], af), y[i:i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def _maps(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    scale = torch.rand(D, generator=g, dtype=torch.float64) * 3 + 0.2
    shift = torch.randn(D, generator=g, dtype=torch.float64) * 4
    full = (torch.randn(D, D, generator=g, dtype=torch.float64) + 2 * torch.eye(D, dtype=torch.float64)) * torch.logspace(-1, 1, D, dtype=torch.float64)
    return {
        "rotation x scale": lambda z: 2.5 * z @ q,
        "per-dim scale + shift": lambda z: z * scale + shift,
        "affine": lambda z: z @ full + 5 * shift,
    }


# ---------------------------------------------------------------------------------------------- translation fits
def test_orthogonal_fit_recovers_a_known_rotation_exactly():
    from hf_bridges.modeling.transforms import whitening_map

    x, _ = _data()
    mean, w, _ = whitening_map(x[:K], shrinkage=0.0)
    t = (x - mean) @ w  # the anchors x[:K] have mean 0 and identity covariance here, so t[:K] @ q does too
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    scale = torch.rand(D, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 0.5
    source = (t @ q) * scale - 2.0  # rotated, then per-dimension scale + shift
    fitted = fit_orthogonal(source[:K], t[:K])
    assert fitted.kind == "orthogonal"
    assert torch.allclose(fitted.weight / t[:K].std(0), q.T, atol=1e-8)
    assert torch.allclose(fitted(source), t, atol=1e-8)  # also off the anchors


def test_affine_fit_recovers_an_affine_map_and_auto_picks_it():
    x, _ = _data()
    a = x[:K]
    m = torch.randn(D, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 2 * torch.eye(D, dtype=torch.float64)
    target = a @ m + 3.0
    t = fit_affine(a, target, alpha=0.0)
    assert torch.allclose(t(x), x @ m + 3.0, atol=1e-6)
    auto = fit_translation(a, target)
    assert auto.kind == "affine" and auto.info["residual_affine"] < 1e-4 < auto.info["residual_orthogonal"]


def test_translation_between_different_widths():
    x, _ = _data()
    a = x[:K]
    wide = torch.cat([a, torch.randn(K, 8, dtype=torch.float64)], 1)  # 32 -> 24
    t = fit_orthogonal(wide, a)
    assert t.weight.shape == (D + 8, D) and t(wide).shape == (K, D)
    narrow = fit_orthogonal(a, wide)  # 24 -> 32: zero padding of the narrower space
    assert narrow.weight.shape == (D, D + 8)
    assert fit_translation(wide, a).info["residual"] < 0.05


# ----------------------------------------------------------------------------------------------- the default head
def test_default_config_is_the_aligned_product_and_old_configs_keep_their_meaning():
    config = HeadConfig()
    assert config.aligned and config.projections == ["cosine"] and config.abs_transform == "standard"
    assert config.aggregation == "concat" and config.component_dropout > 0
    old = HeadConfig.from_dict({"projections": ["cosine", "l1"], "aggregation": "mlp_sum"}, legacy=True)
    assert not old.aligned and old.component_dropout == LEGACY_DEFAULTS["component_dropout"]
    with pytest.raises(ValueError, match="aligned component"):
        HeadConfig(subspace_weights=[1.0])  # one projection + aligned = 2 weights


def test_any_non_empty_subset_of_components_predicts():
    x, y = _data()
    head = _train(HeadConfig(), x, y, x[:K], epochs=10)
    xf, af = x.float(), x[:K].float()
    for weights in ([1.0, 1.0], [1.0, 0.0], [0.0, 1.0]):
        acc = (head(xf, af, torch.tensor(weights)).argmax(-1) == y).float().mean()
        assert acc > 0.9, (weights, acc)


def test_default_head_keeps_its_predictions_under_synthetic_maps_and_cosine_does_not():
    x, y = _data()
    anchors = x[:K]
    default = _train(HeadConfig(), x, y, anchors)
    cosine = _train(HeadConfig(aligned=False, abs_transform="none", projections=["cosine"]), x, y, anchors)
    xf, af = x.float(), anchors.float()
    ref_default, ref_cosine = default(xf, af).argmax(-1), cosine(xf, af).argmax(-1)
    kept = {}
    for name, f in _maps().items():
        mx, ma = f(x).float(), f(anchors).float()
        weights, info = align_head(default, af, ma)
        kept[name] = float((default(mx, ma, torch.tensor(weights)).argmax(-1) == ref_default).float().mean())
        assert kept[name] >= 0.97, (name, kept[name], info)
        assert info["stitch_score"] >= 0.97 and info["map"] in ("orthogonal", "affine")
        default.reset_alignment(D)
    affine = _maps()["affine"]
    cos_kept = float((cosine(affine(x).float(), affine(anchors).float()).argmax(-1) == ref_cosine).float().mean())
    assert cos_kept < kept["affine"] - 0.05, (cos_kept, kept)


def test_attach_choice_drops_a_broken_component():
    x, y = _data()
    anchors = x[:K]
    head = _train(HeadConfig(), x, y, anchors, epochs=10)
    noise = torch.randn(K, D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    # the new "encoder" keeps the relative geometry but the aligned fit sees unrelated anchors: pure noise
    weights, info = align_head(head, anchors.float(), noise.float())
    assert info["stitch_score"] < 0.9 and set(info["agreement"]) == {"cosine+aligned", "cosine", "aligned"}
