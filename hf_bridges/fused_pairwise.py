"""Fused L1 / L-infinity kernels (numba), registered into ``hf_bridges.modeling.pairwise`` on first use.

The torch-only kernel in ``modeling/pairwise.py`` builds the (rows, k, D) difference block by block and reduces it
with three vectorised passes (sub, abs, sum / amax): about 3x ``torch.cdist`` on CPU, and no faster, because every
element goes through memory three times. Here each sample row is swept against the transposed anchors (D, k): the
inner loop runs over k contiguous anchors with a running sum / max held in one k-wide row, so nothing but that row
is written and the compiler vectorises it (measured 8-12x ``torch.cdist``, docs/performance.md). L-infinity also
records the first (lowest-index) maximising coordinate, so its backward is a scatter instead of a recomputation.

numba is optional (``pip install "hf_bridges[fast]"``): without it, or with ``HF_BRIDGES_FUSED_KERNELS=0``, or for
remote-code users without this package, the torch kernel runs; it also runs for inputs with NaN or infinity
(``modeling.pairwise`` checks), whose propagation it handles like cdist. L1 sums the coordinates in order, as cdist
does; L-infinity is exact (a max).
"""

from __future__ import annotations

import os

import numpy as np
import torch

ENV = "HF_BRIDGES_FUSED_KERNELS"


def available() -> bool:
    if os.environ.get(ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _build():
    import numba

    @numba.njit(cache=True, nogil=True)
    def l1_rows(x, at, out):  # x (B, D), at (D, k) -> out (B, k)
        for i in range(x.shape[0]):
            row = out[i]
            row[:] = 0.0
            for d in range(x.shape[1]):
                xd = x[i, d]
                ad = at[d]
                for j in range(at.shape[1]):
                    row[j] += abs(xd - ad[j])

    @numba.njit(cache=True, nogil=True)
    def linf_rows(x, at, out):
        for i in range(x.shape[0]):
            row = out[i]
            row[:] = 0.0
            for d in range(x.shape[1]):
                xd = x[i, d]
                ad = at[d]
                for j in range(at.shape[1]):
                    v = abs(xd - ad[j])
                    if v > row[j]:
                        row[j] = v

    @numba.njit(cache=True, nogil=True)
    def linf_rows_index(x, at, out, index):  # + index (B, k): the first coordinate where |x - a| is the maximum
        for i in range(x.shape[0]):
            row = out[i]
            arg = index[i]
            row[:] = 0.0
            arg[:] = 0
            for d in range(x.shape[1]):
                xd = x[i, d]
                ad = at[d]
                dd = np.int32(d)
                for j in range(at.shape[1]):
                    v = abs(xd - ad[j])
                    larger = v > row[j]  # strict: a later equal value keeps the first maximiser
                    row[j] = v if larger else row[j]
                    arg[j] = dd if larger else arg[j]

    return l1_rows, linf_rows, linf_rows_index


_KERNELS: tuple | None = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _build()
    return _KERNELS


def l1(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(B, k) L1 distances of contiguous CPU float32 / float64 ``x`` (B, D) and ``a`` (k, D)."""
    out = x.new_empty(x.shape[0], a.shape[0])
    _kernels()[0](x.detach().numpy(), np.ascontiguousarray(a.detach().numpy().T), out.numpy())
    return out


def linf(x: torch.Tensor, a: torch.Tensor, with_index: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, k) L-infinity distances and, with ``with_index`` (a gradient will be needed), the (B, k) int32 index of
    the first maximising coordinate (recording it costs ~1.8x the plain kernel's time)."""
    out = x.new_empty(x.shape[0], a.shape[0])
    at = np.ascontiguousarray(a.detach().numpy().T)
    if not with_index:
        _kernels()[1](x.detach().numpy(), at, out.numpy())
        return out, None
    index = torch.empty(x.shape[0], a.shape[0], dtype=torch.int32)
    _kernels()[2](x.detach().numpy(), at, out.numpy(), index.numpy())
    return out, index
