"""Pairwise L1 and L-infinity distances in plain PyTorch: the (B, k, D) differences are built block by block in a
bounded buffer and reduced with vectorised kernels; a custom autograd function recomputes them in backward, so
memory stays O(B*k + B*D + k*D + chunk). With the package and numba installed, CPU float32 / float64 inputs go
through ``hf_bridges.fused_pairwise`` instead. Design choices and measurements: docs/performance.md (l1 / linf).
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_BYTES = 4 << 20  # bytes of the (rows, cols, D) work buffer (sweep: RESULTS.md)


def _compute_dtype(x: torch.Tensor, a: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    out_dtype = torch.promote_types(x.dtype, a.dtype)
    if not out_dtype.is_floating_point:
        raise TypeError(f"pairwise distances need floating-point inputs, got {x.dtype} and {a.dtype}")
    # half / bfloat16: accumulate in float32 for accuracy (and CPU kernels for them are slower anyway).
    compute = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
    return compute, out_dtype


def _blocks(B: int, k: int, D: int, elem: int, chunk_bytes: int, keep: str = "k"):
    """(i0, i1, j0, j1) blocks of at most ``chunk_bytes`` (one pair at least): whole rows of x (``keep="k"``, forward)
    or whole columns (``keep="B"``, backward: grad_a written once per slab of anchors)."""
    pair = max(1, D * elem)
    if keep == "k":
        if k * pair <= chunk_bytes:
            rb, kb = max(1, chunk_bytes // (k * pair)), k
        else:
            rb, kb = 1, max(1, chunk_bytes // pair)
    else:
        if B * pair <= chunk_bytes:
            rb, kb = B, max(1, chunk_bytes // (B * pair))
        else:
            rb, kb = max(1, chunk_bytes // pair), 1
    for j0 in range(0, k, kb):
        for i0 in range(0, B, rb):
            yield i0, min(B, i0 + rb), j0, min(k, j0 + kb)


def _check(x: torch.Tensor, a: torch.Tensor) -> None:
    if x.dim() != 2 or a.dim() != 2 or x.shape[1] != a.shape[1]:
        raise ValueError(f"expected x (B, D) and a (k, D), got {tuple(x.shape)} and {tuple(a.shape)}")


def _first_argmax_index(D: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # weights D, D-1, ..., 1 (exact in float32 for D < 2**24): the largest weight among maximisers is the first one.
    return torch.arange(D, 0, -1, dtype=dtype, device=device)


_CDIST_BACKWARD = getattr(torch.ops.aten, "_cdist_backward", None)
FUSED_MIN_ROWS = 4  # measured: at B=1 the (D, k) anchor transpose is 2x the whole torch-path call
_FUSED: list = []  # [module] once looked up: hf_bridges.fused_pairwise (numba), or None without it


def _fused(x: torch.Tensor, a: torch.Tensor):
    """The installed package's fused CPU kernels (``hf_bridges.fused_pairwise``, numba) when they apply: CPU,
    float32 / float64, finite inputs (NaN / inf take the torch path, which propagates them like cdist)."""
    if not _FUSED:
        try:  # only with the package installed (and numba): remote code without it takes the torch path
            from hf_bridges import fused_pairwise as module

            _FUSED.append(module if module.available() else None)
        except ImportError:
            _FUSED.append(None)
    module = _FUSED[0]
    if module is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    if x.shape[0] < FUSED_MIN_ROWS:  # the fused kernel transposes the anchors per call: a few rows do not pay it
        return None
    # one sum per input tells non-finite values apart (NaN / inf propagate into it; a finite overflow only costs
    # the slower path): 20x cheaper than isfinite().all()
    if not x.numel() or not a.numel() or not bool(torch.isfinite(x.sum() + a.sum())):
        return None
    return module


def _reduce_abs_differences(x: torch.Tensor, a: torch.Tensor, chunk_bytes: int, reduce) -> torch.Tensor:
    """(B, k) ``reduce(|x_b - a_k|, dim=-1)`` (``torch.sum``: L1, ``torch.amax``: L-inf), block by block in one buffer."""
    B, D = x.shape
    k = a.shape[0]
    out = x.new_zeros(B, k)
    if B and k and D:
        buf = x.new_empty(min(B * k * D, max(D, chunk_bytes // x.element_size())))
        for i0, i1, j0, j1 in _blocks(B, k, D, x.element_size(), chunk_bytes):
            d = buf[: (i1 - i0) * (j1 - j0) * D].view(i1 - i0, j1 - j0, D)
            torch.sub(x[i0:i1, None, :], a[None, j0:j1, :], out=d)
            if j1 - j0 == k:
                reduce(d.abs_(), dim=-1, out=out[i0:i1])
            else:
                out[i0:i1, j0:j1] = reduce(d.abs_(), dim=-1)
    return out


class _L1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, chunk_bytes: int) -> torch.Tensor:  # type: ignore[override]
        fused = _fused(x, a)
        out = fused.l1(x, a) if fused is not None else _reduce_abs_differences(x, a, chunk_bytes, torch.sum)
        ctx.save_for_backward(x, a, out)
        ctx.chunk_bytes = chunk_bytes
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, a, dist = ctx.saved_tensors
        need_x, need_a = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        B, D = x.shape
        k = a.shape[0]
        if B and k and D and _CDIST_BACKWARD is not None:
            # cdist's own p=1 backward kernel (the one torch.cdist's autograd calls, x2's gradient with the roles
            # swapped): measured faster than the chunked sign-GEMV backward below, so backward equals cdist's.
            g = g.to(x.dtype).contiguous()
            gx = _CDIST_BACKWARD(g, x, a, 1.0, dist) if need_x else None
            ga = _CDIST_BACKWARD(g.t().contiguous(), a, x, 1.0, dist.t().contiguous()) if need_a else None
            return gx, ga, None
        gx = x.new_zeros(B, D) if need_x else None
        ga = a.new_zeros(k, D) if need_a else None
        if B and k and D and (need_x or need_a):
            g = g.to(x.dtype).contiguous()
            chunk_bytes = ctx.chunk_bytes
            buf = x.new_empty(min(B * k * D, max(D, chunk_bytes // x.element_size())))
            for i0, i1, j0, j1 in _blocks(B, k, D, x.element_size(), chunk_bytes, keep="B"):
                d = buf[: (i1 - i0) * (j1 - j0) * D].view(i1 - i0, j1 - j0, D)
                torch.sub(x[i0:i1, None, :], a[None, j0:j1, :], out=d)
                d.sign_()  # sign(x_b - a_k); sign(0) = 0 as in cdist
                gb = g[i0:i1, j0:j1]
                # batched GEMVs read the sign block once each: grad_x[b] += g[b, :] @ S[b], grad_a[k] -= g[:, k] @ S[:, k]
                if need_x:
                    gx[i0:i1].unsqueeze(1).baddbmm_(gb.unsqueeze(1), d)
                if need_a and i1 - i0 >= 16:
                    ga[j0:j1].unsqueeze(1).baddbmm_(gb.t().unsqueeze(1), d.transpose(0, 1), alpha=-1)
                elif need_a:  # few samples: k tiny GEMVs are overhead-bound, use a broadcast multiply-sum instead
                    ga[j0:j1] -= (d * gb[:, :, None]).sum(0)
        return gx, ga, None


class _Linf(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, chunk_bytes: int) -> torch.Tensor:  # type: ignore[override]
        fused = _fused(x, a)
        if fused is not None:  # with a gradient ahead, the kernel records each pair's maximiser: backward scatters
            out, index = fused.linf(x, a, with_index=any(ctx.needs_input_grad[:2]))
        else:
            out, index = _reduce_abs_differences(x, a, chunk_bytes, torch.amax), None
        ctx.save_for_backward(x, a, out, *([] if index is None else [index]))
        ctx.chunk_bytes = chunk_bytes
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, a, dist, *fused_index = ctx.saved_tensors
        need_x, need_a = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        B, D = x.shape
        k = a.shape[0]
        gx = x.new_zeros(B, D) if need_x else None
        ga = a.new_zeros(k, D) if need_a else None
        if fused_index and (need_x or need_a):
            idx = fused_index[0].long()
        elif B and k and D and (need_x or need_a):
            chunk_bytes = ctx.chunk_bytes
            es = x.element_size()
            buf = x.new_empty(min(B * k * D, max(D, chunk_bytes // es)))
            weights = _first_argmax_index(D, x.device, x.dtype)
            idx = torch.empty(B, k, dtype=torch.long, device=x.device)
            for i0, i1, j0, j1 in _blocks(B, k, D, es, chunk_bytes, keep="B"):
                d = buf[: (i1 - i0) * (j1 - j0) * D].view(i1 - i0, j1 - j0, D)
                torch.sub(x[i0:i1, None, :], a[None, j0:j1, :], out=d)
                # first coordinate where |x - a| equals the distance (bitwise equal: same ops as in forward).
                # |d| - dist is <= 0 and == 0 exactly at maximisers; sign -> {-1, 0}; w + (D+1)*sign is >= 1 only
                # there and largest at the lowest index. (Broadcast eq / argmax / max(dim) are 5-15x slower on CPU.)
                d.abs_().sub_(dist[i0:i1, j0:j1, None]).sign_()
                torch.add(weights, d, alpha=D + 1, out=d)
                idx[i0:i1, j0:j1] = D - d.amax(-1).long()
            idx.clamp_(0, D - 1)  # all-NaN rows have no match; keep the index valid (the grad is NaN anyway)
        if B and k and D and (need_x or need_a):
            g = g.to(x.dtype)
            ar = torch.arange(k, device=x.device)
            diff = x.gather(1, idx) - a[ar[None, :], idx]  # (B, k): x_b - a_k at the argmax coordinate
            s = diff.sign_().mul_(g)
            if need_x:
                gx.scatter_add_(1, idx, s)
            if need_a:
                ga.scatter_add_(1, idx.t(), -s.t())
        return gx, ga, None


def _run(fn, x: torch.Tensor, a: torch.Tensor, chunk_bytes: int | None) -> torch.Tensor:
    _check(x, a)
    compute, out_dtype = _compute_dtype(x, a)
    cb = DEFAULT_CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
    out = fn.apply(x.to(compute).contiguous(), a.to(compute).contiguous(), cb)
    return out.to(out_dtype)


def l1_distance(x: torch.Tensor, a: torch.Tensor, chunk_bytes: int | None = None) -> torch.Tensor:
    """Pairwise L1 distances ``(B, k)`` between rows of ``x`` (B, D) and ``a`` (k, D); same values as
    ``torch.cdist(x, a, p=1)``, differentiable in both, computed in bounded chunks (never a B*k*D tensor).
    Gradient at ties (``x_bd == a_kd``) uses ``sign(0) = 0``, as cdist does."""
    return _run(_L1, x, a, chunk_bytes)


def linf_distance(x: torch.Tensor, a: torch.Tensor, chunk_bytes: int | None = None) -> torch.Tensor:
    """Pairwise L-infinity distances ``(B, k)``; same values as ``torch.cdist(x, a, p=inf)``, differentiable in both.
    The gradient flows through one coordinate per pair: the first (lowest-index) maximiser of ``|x_b - a_k|``
    (cdist instead gives every tied coordinate the full gradient)."""
    return _run(_Linf, x, a, chunk_bytes)
