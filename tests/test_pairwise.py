"""Tests for pairwise.l1_distance / linf_distance against torch.cdist."""

from __future__ import annotations

import pytest
import torch

from hf_bridges.modeling import pairwise
from hf_bridges.modeling.pairwise import l1_distance, linf_distance

INF = float("inf")


@pytest.fixture(autouse=True, params=["torch", "fused"])
def kernel(request, monkeypatch):
    """Every test runs on both CPU kernels: the torch-only chunked one (what remote-code users without hf_bridges
    get) and the numba-fused one (``hf_bridges.fused_pairwise``, when numba is installed)."""
    if request.param == "torch":
        monkeypatch.setattr(pairwise, "_FUSED", [None])
    else:
        from hf_bridges import fused_pairwise

        if not fused_pairwise.available():
            pytest.skip("numba is not installed (pip install 'hf_bridges[fast]')")
        monkeypatch.setattr(pairwise, "_FUSED", [])
    return request.param


def test_the_fused_kernel_is_used_when_present_and_nan_takes_the_torch_path(kernel):
    x, a = _pair(5, 7, 3, torch.float32)
    assert (pairwise._fused(x, a) is not None) == (kernel == "fused")
    x[0, 0] = float("nan")
    assert pairwise._fused(x, a) is None  # NaN / inf: the torch path, which propagates them like cdist
    for fn in (l1_distance, linf_distance):
        out = fn(x, a)
        assert torch.isnan(out[0]).all() and torch.isfinite(out[1:]).all()


FNS = [(l1_distance, 1.0), (linf_distance, INF)]
IDS = ["l1", "linf"]


def _pair(B: int, k: int, D: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g, dtype=dtype), torch.randn(k, D, generator=g, dtype=dtype)


@pytest.mark.parametrize("fn,p", FNS, ids=IDS)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("chunk", [None, 1, 4096, 1 << 16])
def test_values_match_cdist(fn, p, dtype, rtol, chunk):
    x, a = _pair(37, 53, 29, dtype)
    out, ref = fn(x, a, chunk), torch.cdist(x, a, p=p)
    assert out.dtype == dtype and out.shape == (37, 53)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=0)


@pytest.mark.parametrize("fn,p", FNS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grads_match_cdist(fn, p, dtype):
    x, a = _pair(19, 23, 31, dtype)
    x.requires_grad_(), a.requires_grad_()
    g = torch.randn(19, 23, dtype=dtype)
    got = torch.autograd.grad(fn(x, a, 2048), (x, a), g)
    ref = torch.autograd.grad(torch.cdist(x, a, p=p), (x, a), g)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
    for u, v in zip(got, ref):
        torch.testing.assert_close(u, v, **tol)


@pytest.mark.parametrize("fn", [l1_distance, linf_distance], ids=IDS)
@pytest.mark.parametrize("chunk", [None, 200])
def test_gradcheck_x_and_a(fn, chunk):
    x, a = _pair(4, 5, 6)
    x.requires_grad_(), a.requires_grad_()
    assert torch.autograd.gradcheck(lambda u, v: fn(u, v, chunk), (x, a))


@pytest.mark.parametrize("fn", [l1_distance, linf_distance], ids=IDS)
def test_grad_only_x_or_only_a(fn):
    x, a = _pair(3, 4, 5)
    x.requires_grad_()
    (gx,) = torch.autograd.grad(fn(x, a).sum(), (x,))
    assert gx.shape == x.shape
    x = x.detach()
    a.requires_grad_()
    (ga,) = torch.autograd.grad(fn(x, a).sum(), (a,))
    assert ga.shape == a.shape


@pytest.mark.parametrize("fn,p", FNS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(fn, p, dtype):
    x, a = _pair(8, 16, 32, torch.float32)
    x, a = x.to(dtype).requires_grad_(), a.to(dtype).requires_grad_()
    out = fn(x, a)
    assert out.dtype == dtype
    ref = torch.cdist(x.detach().float(), a.detach().float(), p=p).to(dtype)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert x.grad.dtype == dtype and a.grad.dtype == dtype


@pytest.mark.parametrize("fn,p", FNS, ids=IDS)
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 2, 1), (2, 1, 3), (1, 2, 384), (5, 3, 1)])
def test_edge_shapes(fn, p, shape):
    B, k, D = shape
    x, a = _pair(B, k, D)
    x.requires_grad_(), a.requires_grad_()
    out = fn(x, a, 8)
    torch.testing.assert_close(out, torch.cdist(x, a, p=p))
    gx, ga = torch.autograd.grad(out.sum(), (x, a))
    rx, ra = torch.autograd.grad(torch.cdist(x, a, p=p).sum(), (x, a))
    torch.testing.assert_close(gx, rx), torch.testing.assert_close(ga, ra)


@pytest.mark.parametrize("fn", [l1_distance, linf_distance], ids=IDS)
@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)])
def test_empty_shapes(fn, shape):
    B, k, D = shape
    x, a = torch.randn(B, D, requires_grad=True), torch.randn(k, D, requires_grad=True)
    out = fn(x, a)
    assert out.shape == (B, k)
    assert torch.equal(out, torch.zeros(B, k))  # cdist gives zeros for D == 0 too
    out.sum().backward()
    assert x.grad.shape == x.shape and a.grad.shape == a.shape


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        l1_distance(torch.randn(3, 4), torch.randn(5, 3))
    with pytest.raises(ValueError):
        linf_distance(torch.randn(2, 3, 4), torch.randn(5, 4))
    with pytest.raises(TypeError):
        l1_distance(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))


def test_sample_equal_to_anchor_is_exactly_zero():
    x, a = _pair(6, 10, 64, torch.float32)
    a[3] = x[2]
    for fn in (l1_distance, linf_distance):
        assert fn(x, a)[2, 3].item() == 0.0


def test_linf_ties_go_to_first_coordinate_deterministically():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    a = torch.tensor([[1.0, -1.0, 1.0, 0.5], [0.0, 2.0, -2.0, 2.0]], requires_grad=True)
    for _ in range(3):
        out = linf_distance(x, a, 16)
        gx, ga = torch.autograd.grad(out.sum(), (x, a))
        assert out.tolist() == [[1.0, 2.0]]
        # pair 0: |d| = 1 at coords 0,1,2 -> coord 0 (x - a = -1); pair 1: |d| = 2 at 1,2,3 -> coord 1 (x - a = -2)
        assert gx.tolist() == [[-1.0, -1.0, 0.0, 0.0]]
        assert ga.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]


@pytest.mark.parametrize("fn", [l1_distance, linf_distance], ids=IDS)
def test_no_full_bkd_allocation(fn):
    B, k, D = 32, 64, 128
    full = B * k * D * 4  # 1 MiB
    chunk = 32 << 10
    x, a = torch.randn(B, D, requires_grad=True), torch.randn(k, D, requires_grad=True)
    g = torch.randn(B, k)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn(x, a, chunk)
        torch.autograd.grad(out, (x, a), g)
    biggest = max(max(e.cpu_memory_usage, 0) for e in prof.events() if e.name in ("aten::empty", "aten::empty_strided"))
    assert biggest <= max(chunk, B * k * 8, 4 * B * D, 4 * k * D), biggest  # chunk or O(B*k) / O((B+k) D) only
    assert biggest < full // 4
    # control: the naive broadcast does allocate B*k*D
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        (x[:, None] - a[None]).abs().sum(-1)
    assert max(max(e.cpu_memory_usage, 0) for e in prof.events()) >= full


# ------------------------------------------------------------------ the projections and a whole model, every dtype
PROJECTION_NAMES = ["cosine", "angular", "euclidean", "l1", "linf"]


@pytest.mark.parametrize("name", ["l1", "linf"])
def test_projections_use_the_kernel_and_match_cdist(name):
    from hf_bridges.modeling.head import get_projection

    x, a = _pair(64, 40, 48, torch.float32)
    p = 1.0 if name == "l1" else INF
    torch.testing.assert_close(get_projection(name).fn(x, a), torch.cdist(x, a, p=p), rtol=1e-5, atol=1e-5)
    # batched (3-D) inputs still work, through cdist
    torch.testing.assert_close(
        get_projection(name).fn(x[None], a[None])[0], torch.cdist(x, a, p=p), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("name", PROJECTION_NAMES)
def test_every_projection_every_dtype_forward_backward(name, dtype):
    from hf_bridges.modeling.head import get_projection

    x, a = _pair(8, 12, 16, dtype)
    x.requires_grad_(), a.requires_grad_()
    out = get_projection(name).fn(x, a)
    assert out.dtype == dtype and out.shape == (8, 12) and torch.isfinite(out).all()
    out.float().sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad).all() and torch.isfinite(a.grad).all()
    ref = get_projection(name).fn(x.detach().double(), a.detach().double())
    tol = {torch.bfloat16: 3e-2, torch.float16: 5e-3, torch.float64: 1e-10}[dtype]
    torch.testing.assert_close(out.detach().double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_bridge_model_in_every_dtype_runs_forward_and_a_training_step(
    dtype, tiny_encoder_dir, anchor_texts, one_thread
):
    """issue 11.4: ``model.to(torch.bfloat16)`` (or fp16 / float64) works at inference and training on CPU."""
    from hf_bridges.modeling.modeling_bridge import BridgeForSequenceClassification

    model = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir,
        anchors=anchor_texts,
        num_labels=5,
        projections=PROJECTION_NAMES,
        freeze_encoder=False,
    ).to(dtype)
    batch = model.tokenizer(anchor_texts[:6], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    out = model(**batch, labels=torch.arange(6) % 5)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}  # the unused pooler has none
    # the bridge registers its head as ``score`` (``head`` is an alias, so named_parameters lists it once)
    assert any(n.startswith("score.") for n in grads) and any(n.startswith("encoder.") for n in grads)
    assert all(g.dtype == dtype and torch.isfinite(g).all() for g in grads.values())
    optimizer.step()
    with torch.no_grad():  # the step changed the encoder: anchors re-embed (auto) in the model's dtype
        assert torch.isfinite(model(**batch).logits).all() and model.anchor_embeddings.dtype == dtype


def test_l1_chunked_backward_fallback_matches_cdist(monkeypatch):
    """The sign-GEMV backward, used where aten._cdist_backward is missing, gives cdist's gradients."""
    from hf_bridges.modeling import pairwise

    monkeypatch.setattr(pairwise, "_CDIST_BACKWARD", None)
    for B in (1, 19):  # few samples take the broadcast path for grad_a, more the batched GEMVs
        x, a = _pair(B, 23, 31)
        x.requires_grad_(), a.requires_grad_()
        g = torch.randn(B, 23, dtype=torch.float64)
        got = torch.autograd.grad(l1_distance(x, a, 2048), (x, a), g)
        ref = torch.autograd.grad(torch.cdist(x, a, p=1.0), (x, a), g)
        for u, v in zip(got, ref):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


def test_anchors_modified_in_place_or_replaced_are_never_served_stale(kernel):
    """Distances after the anchors are changed in place or replaced are fresh (a transposed-anchor cache keyed on
    the tensor's version counter, tried in round 3, served stale anchors: whatever caches them must pass this)."""
    x, a = _pair(6, 50, 8, torch.float32)
    for fn, p in FNS:
        torch.testing.assert_close(fn(x, a), torch.cdist(x, a, p=p))
        a.mul_(2.0).add_(0.5)
        torch.testing.assert_close(fn(x, a), torch.cdist(x, a, p=p))
        b = a.clone().neg_()
        torch.testing.assert_close(fn(x, b), torch.cdist(x, b, p=p))
