"""Each projection is invariant to exactly the transformations it promises (float64), and breaks elsewhere."""

from __future__ import annotations

import pytest
import torch

from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import (
    PROJECTIONS,
    RelativeProductHead,
    get_abs_transform,
    get_projection,
    register_projection,
)

N, K, D = 16, 12, 24


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    anchors = torch.randn(K, D, generator=g, dtype=torch.float64)
    return x, anchors


def orthogonal(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed, never a signed permutation


def signed_permutation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(D, generator=g)
    signs = torch.where(torch.rand(D, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    return torch.eye(D, dtype=torch.float64)[perm] * signs


TRANSFORMS = {
    "rotation": lambda z: z @ orthogonal(1),
    "scaling": lambda z: 7.5 * z,
    "translation": lambda z: z + 3.0,
    "signed_permutation": lambda z: z @ signed_permutation(2),
}

# What each projection must survive (True) and what must change it (False), per DESIGN.md's table.
EXPECTED = {
    "cosine": {"rotation": True, "scaling": True, "translation": False, "signed_permutation": True},
    "angular": {"rotation": True, "scaling": True, "translation": False, "signed_permutation": True},
    "euclidean": {"rotation": True, "scaling": False, "translation": True, "signed_permutation": True},
    "l1": {"rotation": False, "scaling": False, "translation": True, "signed_permutation": True},
    "linf": {"rotation": False, "scaling": False, "translation": True, "signed_permutation": True},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_invariance_table(data, name, transform):
    x, anchors = data
    fn, t = get_projection(name).fn, TRANSFORMS[transform]
    before, after = fn(x, anchors), fn(t(x), t(anchors))
    invariant = torch.allclose(before, after, atol=1e-8, rtol=1e-8)
    assert invariant is EXPECTED[name][transform], f"{name} under {transform}: max diff {(before - after).abs().max()}"
    if not invariant:  # "breaks" must be a real change, not rounding noise
        assert (before - after).abs().max() > 1e-3


def test_every_registered_projection_is_covered():
    assert set(PROJECTIONS) == set(EXPECTED)


def test_centering_makes_cosine_translation_invariant(data):
    x, anchors = data
    center = get_abs_transform("centering")
    shift = torch.linspace(-5, 5, D, dtype=torch.float64)
    a = get_projection("cosine").fn(*center(x, anchors))
    b = get_projection("cosine").fn(*center(x + shift, anchors + shift))
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name", ["cosine", "euclidean", "l1", "linf"])
def test_standard_scaling_is_invariant_to_per_dimension_affine_maps(data, name):
    x, anchors = data
    scale = torch.linspace(0.5, 4.0, D, dtype=torch.float64)
    shift = torch.linspace(-2, 2, D, dtype=torch.float64)
    standard = get_abs_transform("standard")
    a = get_projection(name).fn(*standard(x, anchors))
    b = get_projection(name).fn(*standard(x * scale + shift, anchors * scale + shift))
    assert torch.allclose(a, b, atol=1e-9)


def test_projections_match_their_formulas(data):
    x, anchors = data
    diff = x[:, None, :] - anchors[None, :, :]  # reference only: the projections never build this tensor
    assert torch.allclose(get_projection("euclidean").fn(x, anchors), diff.norm(dim=-1))
    assert torch.allclose(get_projection("l1").fn(x, anchors), diff.abs().sum(-1))
    assert torch.allclose(get_projection("linf").fn(x, anchors), diff.abs().amax(-1))
    cos = torch.nn.functional.cosine_similarity(x[:, None], anchors[None], dim=-1)
    assert torch.allclose(get_projection("cosine").fn(x, anchors), cos)
    assert torch.allclose(get_projection("angular").fn(x, anchors), torch.arccos(cos) / torch.pi, atol=1e-6)


def test_cosine_of_zero_vector_is_finite(data):
    x, anchors = data
    x[0] = 0.0
    anchors[1] = 0.0
    for name in ("cosine", "angular"):
        out = get_projection(name).fn(x, anchors)
        assert torch.isfinite(out).all()


def test_head_invariance_end_to_end(data):
    """The head (projection + LayerNorm + aggregation) inherits the projections' invariances."""
    x, anchors = data
    head = (
        RelativeProductHead(
            HeadConfig(
                projections=["cosine", "euclidean"],
                aggregation="mlp_sum",
                abs_transform="none",
                aligned=False,
                combine="concat",
                component_dropout=0.0,
            ),
            K,
            num_labels=3,
        )
        .double()
        .eval()
    )
    q = orthogonal(5)
    assert torch.allclose(head(x, anchors), head(x @ q, anchors @ q), atol=1e-8)
    l1_head = (
        RelativeProductHead(
            HeadConfig(
                projections=["l1"],
                aggregation="sum",
                abs_transform="none",
                aligned=False,
                combine="concat",
                component_dropout=0.0,
            ),
            K,
            num_labels=3,
        )
        .double()
        .eval()
    )
    assert not torch.allclose(l1_head(x, anchors), l1_head(x @ q, anchors @ q), atol=1e-4)


def test_unknown_projection_lists_valid_names():
    with pytest.raises(ValueError, match="valid projections.*cosine"):
        get_projection("manhattan")


def test_registering_a_projection_is_one_decorator():
    name = "negative_sq_euclidean_test"

    @register_projection(name, invariant_to="isometries")
    def _fn(x, anchors):
        return -(torch.cdist(x, anchors) ** 2)

    try:
        head = RelativeProductHead(
            HeadConfig(
                projections=[name, "cosine"],
                aggregation="concat",
                abs_transform="none",
                aligned=False,
                combine="concat",
                component_dropout=0.0,
            ),
            4,
            num_labels=2,
        )
        assert head(torch.randn(3, 5), torch.randn(4, 5)).shape == (3, 2)
        with pytest.raises(ValueError, match="already registered"):
            register_projection(name, invariant_to="x")(_fn)
    finally:
        PROJECTIONS.unregister(name)


def _whitened_cosines(x, anchors, shrinkage):
    from hf_bridges.modeling.head import whiten

    wx, wa = whiten(x, anchors, shrinkage=shrinkage)
    return torch.nn.functional.normalize(wx, dim=1) @ torch.nn.functional.normalize(wa, dim=1).T


def test_whiten_is_invariant_to_any_invertible_affine_map_without_shrinkage():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3, 8, dtype=torch.float64) + 1.5
    anchors = x[:30]
    m = torch.randn(8, 8, generator=g, dtype=torch.float64) + 0.5 * torch.eye(8, dtype=torch.float64)
    c = torch.randn(8, generator=g, dtype=torch.float64) * 4
    before = _whitened_cosines(x, anchors, 0.0)
    after = _whitened_cosines(x @ m + c, anchors @ m + c, 0.0)
    assert torch.allclose(before, after, atol=1e-6)
    # where it must break: a nonlinear map, and shrinkage=1 (centring + one isotropic scale: not affine-invariant)
    assert not torch.allclose(before, _whitened_cosines(torch.tanh(x), torch.tanh(anchors), 0.0), atol=1e-2)
    assert not torch.allclose(
        _whitened_cosines(x, anchors, 1.0), _whitened_cosines(x @ m + c, anchors @ m + c, 1.0), atol=1e-2
    )


def test_whiten_is_registered_and_ledoit_wolf_shrinks_when_anchors_are_few():
    from hf_bridges.modeling.head import ABS_TRANSFORMS, ledoit_wolf_shrinkage, whitening_map

    assert "whiten" in ABS_TRANSFORMS
    few = torch.randn(10, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, w, amount = whitening_map(few)
    assert 0 < amount <= 1 and torch.isfinite(w).all()
    assert ledoit_wolf_shrinkage(few - few.mean(0)) == amount
