"""Aggregations: output widths, subspace weights that really drop subspaces, subspace dropout, registry errors."""

from __future__ import annotations

import pytest
import torch

from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import AGGREGATIONS, RelativeProductHead, build_aggregation, build_subspace_norm

B, N, K = 5, 4, 6


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_output_width(name):
    agg = build_aggregation(name, N, K)
    out = agg(torch.randn(B, N, K))
    assert out.shape == (B, agg.output_dim)
    assert agg.output_dim == (N * K if name == "concat" else K)


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_zero_weight_drops_a_subspace(name):
    torch.manual_seed(0)
    agg = build_aggregation(name, N, K).eval()
    with torch.no_grad():
        if name == "weighted":
            agg.logits.copy_(torch.randn(N))
    x = torch.randn(B, N, K)
    y = x.clone()
    y[:, 2] = torch.randn(B, K) * 100  # change only the dropped subspace
    w = torch.tensor([1.0, 1.0, 0.0, 1.0])
    assert torch.allclose(agg(x, w), agg(y, w), atol=1e-5)
    assert not torch.allclose(agg(x), agg(y), atol=1e-3)  # and without the weights it does matter


@pytest.mark.parametrize("name", ["mlp_sum", "self_attention"])
def test_width_caps_the_learned_maps(name):
    paper = build_aggregation(name, N, 64)  # k -> k, as in the paper
    narrow = build_aggregation(name, N, 64, width=16)
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert narrow.output_dim == 16 and paper.output_dim == 64
    assert count(narrow) < count(paper) / 3
    assert narrow(torch.randn(B, N, 64), torch.tensor([1.0, 0.0, 1.0, 1.0])).shape == (B, 16)
    assert build_aggregation(name, N, 8, width=256).output_dim == 8  # never wider than the subspaces


def test_weights_are_rescaled_to_mean_one():
    agg = build_aggregation("sum", N, K)
    x = torch.ones(B, N, K)
    assert torch.allclose(agg(x), agg(x, torch.tensor([1.0, 1.0, 0.0, 0.0])))


def test_unknown_aggregation_lists_valid_names():
    with pytest.raises(ValueError, match="valid aggregations.*mlp_sum"):
        build_aggregation("max_pool", N, K)


def test_unknown_subspace_norm():
    with pytest.raises(ValueError, match="layernorm"):
        build_subspace_norm("groupnorm", K)


def test_subspace_dropout_keeps_a_nonempty_subset_and_is_off_in_eval():
    head = RelativeProductHead(
        HeadConfig(
            projections=["cosine", "euclidean", "l1", "linf"],
            aggregation="sum",
            abs_transform="none",
            aligned=False,
            combine="concat",
            component_dropout=0.0,
            subspace_dropout=0.9,
        ),
        K,
        num_labels=2,
    )
    torch.manual_seed(0)
    masks = {tuple(head._training_mask(4, torch.device("cpu")).tolist()) for _ in range(200)}
    assert all(sum(m) >= 1 for m in masks)
    assert len(masks) > 4  # really random subsets
    x, a = torch.randn(B, 8), torch.randn(K, 8)
    head.eval()
    assert torch.equal(head(x, a), head(x, a))


def test_from_encoder_and_reset_parameters_give_the_same_init_beyond_256_anchors(tiny_encoder_dir):
    """The bridge's _init_weights and MLPSumAggregation.reset_parameters used to differ (output width vs fan-in)
    whenever there were more than 256 anchors (aggregation_dim caps the width at 256)."""
    from hf_bridges import BridgeForSequenceClassification
    from hf_bridges.modeling.head import MLPSumAggregation

    anchors = [f"anchor text number {i} about topic {i % 7}" for i in range(1280)]
    model = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir,
        anchors=anchors,
        num_labels=2,
        max_seq_length=12,
        aggregation="mlp_sum",
        anchor_batch_size=256,
    )
    built = model.head.aggregation.weight.detach()
    assert built.shape[1:] == (1280, 256)
    fresh = MLPSumAggregation(built.shape[0], 1280, 256).weight.detach()
    assert abs(built.std().item() / fresh.std().item() - 1) < 0.02
    assert built.abs().max() <= 1280**-0.5 + 1e-6  # fan-in bound
    module = model.head.aggregation
    module.reset_parameters()
    assert abs(module.weight.std().item() / built.std().item() - 1) < 0.02
