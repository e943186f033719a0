"""Issue 21.5: the statistics of fixed anchors are fitted once per anchors tensor, not on every forward, and the
outputs equal the per-call formulas they replace."""

from __future__ import annotations

import pytest
import torch

from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead, get_abs_transform


def _head(abs_transform: str = "standard", relative_anchors: int | None = 24, **extra) -> RelativeProductHead:
    torch.manual_seed(0)
    config = HeadConfig(abs_transform=abs_transform, relative_anchors=relative_anchors, **extra)
    return RelativeProductHead(config, num_anchors=40, num_labels=3, embedding_dim=16)


def _old_represent(head: RelativeProductHead, x: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """r(z) with the statistics recomputed from the anchors in every call (the code before issue 21.5)."""
    a = anchors.to(x.dtype)
    mean, std = a.mean(0), a.std(0).clamp_min(1e-6)
    mapped = ((x - mean) / std) @ head.aligned_weight.to(x.dtype) + head.aligned_bias.to(x.dtype)
    rel = anchors[: head.relative_anchors]
    if head.relative_space == "translated":
        xs, rel = mapped, head.aligned_anchors.to(x.dtype)
    else:
        xs = x
    xt, at = get_abs_transform(head.abs_transform_name)(xs, rel.to(x.dtype))
    raw = torch.stack([project(xt, at) for project in head._projections], dim=1)
    normed = torch.stack([norm(raw[:, i]) for i, norm in enumerate(head.norms)], dim=1)
    return torch.cat([head.aggregation(normed), head.aligned_norm(mapped)], dim=1)


def _std_calls(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in ("aten::std", "aten::std_mean", "aten::var_mean"))


@pytest.mark.parametrize("abs_transform", ["standard", "centering", "whiten", "none"])
def test_outputs_equal_the_per_call_formulas_and_statistics_are_fitted_once(abs_transform):
    head = _head(abs_transform).eval()
    anchors, x = torch.randn(40, 16), torch.randn(9, 16)
    with torch.no_grad():
        expected = _old_represent(head, x, anchors)
        first = head.represent(x, anchors)
        torch.testing.assert_close(first, expected, atol=1e-6, rtol=0)
        assert _std_calls(lambda: head.represent(x, anchors)) == 0  # the second call reuses the fit
        torch.testing.assert_close(head.represent(x, anchors), first, atol=0, rtol=0)
        # the same values in another tensor, and the same tensor changed in place: fitted again, never stale
        torch.testing.assert_close(head.represent(x, anchors.clone()), first, atol=0, rtol=0)
        anchors.mul_(3).add_(1)
        torch.testing.assert_close(head.represent(x, anchors), _old_represent(head, x, anchors), atol=1e-6, rtol=0)


def test_translated_space_and_float64_equal_the_old_formulas():
    head = _head("standard").double().eval()
    head.set_relative_space(torch.randn(24, 16, dtype=torch.float64))
    head.set_alignment(torch.randn(16, 16) / 4, torch.randn(16) / 10)
    anchors, x = torch.randn(40, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    with torch.no_grad():
        head.represent(x, anchors)
        assert _std_calls(lambda: head.represent(x, anchors)) == 0
        got = head.represent(x, anchors)
        torch.testing.assert_close(got, _old_represent(head, x, anchors), atol=1e-12, rtol=0)


def test_training_steps_on_fixed_anchors_compute_no_anchor_statistics():
    head = _head().train()
    anchors, x, y = torch.randn(40, 16), torch.randn(32, 16), torch.randint(0, 3, (32,))
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)

    def step():
        loss = torch.nn.functional.cross_entropy(head(x, anchors), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    assert _std_calls(step) == 0
    # anchors with a gradient (a trainable encoder embeds them in the step) are never memoised: same gradient
    x = torch.randn(6, 16)
    base = torch.randn(40, 16)
    grads = []
    for formula in (lambda a: head.eval().represent(x, a), lambda a: _old_represent(head, x, a)):
        anchors = base.clone().requires_grad_(True)
        formula(anchors).square().sum().backward()
        grads.append(anchors.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)
    assert grads[0].abs().sum() > 0
    # a fit made in inference mode is not reused by a training step (inference tensors refuse to be saved)
    anchors = torch.randn(40, 16)
    with torch.inference_mode():
        head.eval()(x, anchors)
    head.train()
    head(x, anchors).sum().backward()
