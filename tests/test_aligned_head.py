"""The default head (aligned product): translation fits, the aligned component, attach-time choice, synthetic maps."""

from __future__ import annotations

import pytest
import torch

from hf_bridges.heads.compatibility import ALIGNED_THRESHOLD, align_head
from hf_bridges.heads.translation import fit_affine, fit_orthogonal, fit_translation, standardise
from hf_bridges.modeling.configuration_bridge import LEGACY_DEFAULTS, HeadConfig
from hf_bridges.modeling.head import RelativeProductHead, SummedClassifier

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
    head = RelativeProductHead(config, K, CLASSES, embedding_dim=D)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    xf, af = x.float(), anchors.float()
    head.train()
    for _ in range(epochs):
        for i in range(0, len(xf), 128):
            loss = torch.nn.functional.cross_entropy(head(xf[i : i + 128], af), y[i : i + 128])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def _maps(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    scale = torch.rand(D, generator=g, dtype=torch.float64) * 3 + 0.2
    shift = torch.randn(D, generator=g, dtype=torch.float64) * 4
    full = (
        torch.randn(D, D, generator=g, dtype=torch.float64) + 2 * torch.eye(D, dtype=torch.float64)
    ) * torch.logspace(-1, 1, D, dtype=torch.float64)
    return {
        "rotation x scale": lambda z: 2.5 * z @ q,
        "per-dim scale + shift": lambda z: z * scale + shift,
        "affine": lambda z: z @ full + 5 * shift,
    }


# ---------------------------------------------------------------------------------------------- translation fits
def test_orthogonal_fit_recovers_a_known_rotation_exactly():
    from hf_bridges.modeling.head import whitening_map

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
    m = torch.randn(D, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 2 * torch.eye(
        D, dtype=torch.float64
    )
    target = a @ m + 3.0
    t = fit_affine(a, target, alpha=0.0)
    assert torch.allclose(t(x), x @ m + 3.0, atol=1e-6)
    auto = fit_translation(a, target)
    assert auto.kind == "affine" and auto.info["residual_affine"] < 1e-4 < auto.info["residual_orthogonal"]


@pytest.mark.parametrize("k,ds,dt", [(10, 300, 300), (40, 96, 160), (200, 32, 48)], ids=["k<<D", "k<D", "k>D"])
def test_wide_encoders_take_the_small_forms_and_get_the_same_maps(k, ds, dt):
    """k < D: ridge in its dual (k x k) form and Procrustes from QR factors, against the textbook forms (primal ridge
    with an unshrunk bias column; the full SVD of zs^T zt, thin over its non-null directions)."""
    from hf_bridges.heads.translation import NULL_TOLERANCE, anchor_stats, fit_affine, fit_orthogonal

    g = torch.Generator().manual_seed(k)
    source = torch.randn(k, ds, generator=g, dtype=torch.float64)
    target = source[:, : min(ds, dt)] @ torch.randn(min(ds, dt), dt, generator=g, dtype=torch.float64)
    target = target + 0.3 * torch.randn(k, dt, generator=g, dtype=torch.float64)
    x = torch.randn(9, ds, generator=g, dtype=torch.float64)
    ms, ss = anchor_stats(source)
    mt, st = anchor_stats(target)
    zs, zt = (source - ms) / ss, (target - mt) / st
    for alpha in (0.1, 100.0):
        ones = torch.nn.functional.pad(zs, (0, 1), value=1.0)
        eye = torch.eye(ds + 1, dtype=zs.dtype)
        eye[-1, -1] = 0.0
        w = torch.linalg.solve(ones.T @ ones + alpha * eye, ones.T @ zt)
        expected = ((x - ms) / ss) @ (w[:-1] * st) + w[-1] * st + mt
        torch.testing.assert_close(fit_affine(source, target, alpha=alpha)(x), expected, rtol=1e-9, atol=1e-9)
    width = max(ds, dt)
    ps, pt = (torch.nn.functional.pad(z, (0, width - z.shape[1])) for z in (zs, zt))
    u, sv, vt = torch.linalg.svd(ps.T @ pt)
    rank = int((sv > sv[0] * NULL_TOLERANCE).sum())
    rotation = (u[:, :rank] @ vt[:rank])[:ds, :dt]
    torch.testing.assert_close(
        fit_orthogonal(source, target)(x), ((x - ms) / ss) @ rotation * st + mt, rtol=1e-9, atol=1e-9
    )


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
    assert config.aggregation == "concat" and config.component_dropout > 0 and config.combine == "sum"
    assert isinstance(RelativeProductHead(config, K, CLASSES, embedding_dim=D).classifier, SummedClassifier)
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
        assert info["map"] in ("orthogonal", "affine") and info["fit"] >= 0.9 and weights == [1.0, 1.0]
        assert info["relative_space"] == "translated" and info["compatible"], info
        default.reset_alignment(D)
    affine = _maps()["affine"]
    cos_kept = float((cosine(affine(x).float(), affine(anchors).float()).argmax(-1) == ref_cosine).float().mean())
    assert cos_kept < kept["affine"] - 0.05, (cos_kept, kept)


def test_unrelated_encoder_scores_under_the_threshold_and_keeps_every_component():
    x, y = _data()
    anchors = x[:K]
    head = _train(HeadConfig(), x, y, anchors, epochs=10)
    noise = torch.randn(K, D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    weights, info = align_head(head, anchors.float(), noise.float())
    assert info["stitch_score"] < ALIGNED_THRESHOLD and not info["compatible"], info
    assert info["relative_space"] == "native" and info["fit"] < 0.5 and weights == [1.0, 1.0]  # no gating
    assert "aligned_anchors" not in head.state_dict()
    gated, gated_info = align_head(head, anchors.float(), noise.float(), gate=True)  # the explicit option
    assert "agreement" in gated_info and gated in ([1.0, 1.0], [1.0, 0.0], [0.0, 1.0])


def test_summed_head_averages_the_component_logits():
    x, _ = _data()
    torch.manual_seed(0)
    head = RelativeProductHead(HeadConfig(), K, CLASSES, embedding_dim=D).eval()
    xf, af = x[:50].float(), x[:K].float()
    both = head(xf, af)
    r = head.represent(xf, af)
    width = head.aggregation.output_dim
    rel, al = head.classifier.relative(r[:, :width]), head.classifier.aligned(r[:, width:])
    torch.testing.assert_close(both, (rel + al) / 2)
    torch.testing.assert_close(head.classifier(r), both)  # forward_head(represent(...)) == forward
    torch.testing.assert_close(head(xf, af, torch.tensor([1.0, 0.0])), rel)  # a dropped component is absent
    torch.testing.assert_close(head(xf, af, torch.tensor([0.0, 1.0])), al)
    keys = set(head.state_dict())
    assert {"mlp.relative.0.weight", "mlp.aligned.3.bias"} <= keys  # in memory; files keep classifier.*
    concat = RelativeProductHead(HeadConfig(combine="concat"), K, CLASSES, embedding_dim=D)
    assert "mlp.0.weight" in concat.state_dict()
    legacy = RelativeProductHead(HeadConfig.from_dict({}, legacy=True), K, CLASSES)
    assert not legacy.aligned and "mlp.0.weight" in legacy.state_dict()  # old heads too (files: classifier.*)


def test_component_dropout_trains_each_component_alone():
    x, _ = _data()
    head = RelativeProductHead(HeadConfig(component_dropout=0.5), K, CLASSES, embedding_dim=D).train()
    torch.manual_seed(0)
    r = head.represent(x[:400].float(), x[:K].float())
    width = head.aggregation.output_dim
    rel_on, al_on = (r[:, :width] != 0).any(1), (r[:, width:] != 0).any(1)
    assert (rel_on | al_on).all() and (~rel_on).any() and (~al_on).any()  # never both dropped, each dropped alone


def test_thin_orthogonal_fit_ignores_null_directions_and_is_float16_stable():
    g = torch.Generator().manual_seed(2)
    k, width = 20, 48  # k - 1 < D: most directions of the full U V^T are undetermined by the anchors
    source = torch.randn(k, width, generator=g, dtype=torch.float64)
    source[:, 7] = 3.0  # a constant dimension (std 0), like MiniLM-L6's and mpnet's
    q, _ = torch.linalg.qr(torch.randn(width, width, generator=g, dtype=torch.float64))
    target = source @ q + 1.0
    full = fit_orthogonal(source, target)
    assert torch.linalg.matrix_rank(full.weight) <= k - 1
    # off the anchors' span (in the standardised source space) the map gives the target's anchor mean
    z = torch.randn(5, width, generator=g, dtype=torch.float64)
    basis = torch.linalg.svd(standardise(source, source), full_matrices=True)[2]
    null = z @ basis[k:].T @ basis[k:]  # components orthogonal to every standardised anchor
    mean, std = source.mean(0), source.std(0).clamp_min(1e-6)
    off_span = null * std + mean
    torch.testing.assert_close(full(off_span), target.mean(0).expand(5, -1), atol=1e-8, rtol=0)
    # float16 anchors (what a head stores) give the same map on new samples
    half = fit_orthogonal(source.half().double(), target.half().double())
    x = source[:5] + 0.1 * torch.randn(5, width, generator=g, dtype=torch.float64)
    deviation = (half(x) - full(x)).norm() / (full(x) - target.mean(0)).norm()
    assert deviation < 1e-2, deviation


@pytest.mark.parametrize("k,d", [(120, 24), (30, 64)], ids=["primal", "dual"])
def test_ridge_cv_residuals_equal_one_fit_per_alpha(k, d):
    from hf_bridges.heads.translation import RIDGE_ALPHAS, kfold_residual, ridge_cv_residuals

    g = torch.Generator().manual_seed(k)
    target = torch.randn(k, d, generator=g, dtype=torch.float64) * 3 + 1
    source = target @ torch.randn(d, d, generator=g, dtype=torch.float64) + torch.randn(k, d, generator=g).double()
    expected = [kfold_residual(source, target, lambda s, t, a=a: fit_affine(s, t, alpha=a)) for a in RIDGE_ALPHAS]
    assert ridge_cv_residuals(source, target, RIDGE_ALPHAS) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    chosen = fit_affine(source, target)
    assert chosen.alpha == RIDGE_ALPHAS[min(range(len(expected)), key=expected.__getitem__)]
    assert chosen.info["residual_affine"] == pytest.approx(min(expected), rel=1e-9)
