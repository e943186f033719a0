"""Issue 21.2 / 20.2: the stitch report's scores are linear in the anchor count (no k x k matrices for the cosine
reading, a bounded subset for the others) and equal the dense formulas they replace."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from hf_bridges.heads import compatibility
from hf_bridges.heads.compatibility import (
    anchor_space,
    as_head_sees,
    compute_stitch_report,
    linear_cka,
    lowrank_cka,
    projection_scores,
    stitch_signals,
    subspace_scores,
)


def _pair(k: int, d: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, generator=g, dtype=torch.float64) * torch.rand(d, generator=g, dtype=torch.float64) * 3
    b = a @ torch.randn(d, d + 8, generator=g, dtype=torch.float64) + 0.7 * torch.randn(k, d + 8, generator=g).double()
    return a + 0.5, b


def _dense_report(a, b, projections, abs_transform, norm):
    source, target = anchor_space(a, projections, abs_transform), anchor_space(b, projections, abs_transform)
    selection = subspace_scores(source, target)
    source = {n: as_head_sees(m, norm) for n, m in source.items()}
    target = {n: as_head_sees(m, norm) for n, m in target.items()}
    return selection, subspace_scores(source, target)


@pytest.mark.parametrize("norm", ["layernorm", "batchnorm", "none"])
@pytest.mark.parametrize("abs_transform", ["none", "standard", "centering"])
def test_scores_equal_the_dense_k_by_k_formulas(norm, abs_transform):
    a, b = _pair(300)
    projections = ["cosine", "euclidean", "l1", "linf"]
    got = projection_scores(a, b, projections, abs_transform, norm)
    want = _dense_report(a, b, projections, abs_transform, norm)
    for got_part, want_part in zip(got, want):
        assert got_part.keys() == want_part.keys()
        for name in projections:
            assert got_part[name] == pytest.approx(want_part[name], abs=1e-9), name
    p, q = torch.randn(50, 7).double(), torch.randn(50, 7).double()
    r, s = torch.randn(50, 5).double(), torch.randn(50, 5).double()
    assert lowrank_cka(p, q, r, s) == pytest.approx(linear_cka(p @ q.T, r @ s.T), abs=1e-12)


def test_stitch_signals_equal_the_dense_formulas():
    a, b = _pair(400, seed=3)
    got = stitch_signals(a, b, fit=0.8)

    def dense(z):
        z = z.double()
        u = torch.nn.functional.normalize((z - z.mean(0)) / z.std(0).clamp_min(1e-6), dim=1)
        return u @ u.T

    assert got["cka"] == pytest.approx(linear_cka(dense(a), dense(b)), abs=1e-10)
    sims = [dense(z).fill_diagonal_(-2.0).topk(10, dim=1).indices for z in (a, b)]
    inter = (sims[0].unsqueeze(2) == sims[1].unsqueeze(1)).any(2).sum(1).double()
    assert got["knn_jaccard"] == pytest.approx(float((inter / (20 - inter)).mean()), abs=1e-12)


def test_past_the_limit_the_quadratic_scores_read_an_even_subset(monkeypatch):
    a, b = _pair(900, seed=5)
    monkeypatch.setattr(compatibility, "DENSE_REPORT_ANCHORS", 300)
    subset = compatibility.report_subset(900, 300)
    assert len(subset) == 300 and subset[0] == 0 and subset[-1] == 899 and len(set(subset.tolist())) == 300
    got = projection_scores(a, b, ["cosine", "l1"], "standard", "layernorm")
    # cosine stays exact over all 900 anchors; l1 reads the subset
    _, dense_all = _dense_report(a, b, ["cosine"], "standard", "layernorm")
    assert got[1]["cosine"] == pytest.approx(dense_all["cosine"], abs=1e-9)
    sa = compatibility.get_abs_transform("standard")(a, a)[1][subset]
    sb = compatibility.get_abs_transform("standard")(b, b)[1][subset]
    _, dense_sub = _dense_report(sa, sb, ["l1"], "none", "layernorm")
    assert got[1]["l1"] == pytest.approx(dense_sub["l1"], abs=1e-9)
    report = compute_stitch_report(a, b, ["cosine", "l1"], "standard", warn=False)
    assert report.num_anchors == 900 and 0 <= report.score <= 1


@pytest.mark.subprocess
def test_a_16384_anchor_head_attaches_in_memory_linear_in_k(tmp_path):
    """A features-only default head with 16,384 anchors (the validator allows 2^20): saving, attaching to a new
    module (map fit + stitch signals) and its relative stitch report stay far from the 2 GiB k x k float64 matrix
    of one anchor space (before: 4.8 GB, then a raw allocator error)."""
    script = textwrap.dedent(
        f"""
        import json, resource, torch
        from torch import nn
        from hf_bridges import ModuleBridgeForClassification
        from hf_bridges.heads.compatibility import compute_stitch_report
        torch.manual_seed(0)
        k = 16384
        base = nn.Sequential(nn.Linear(12, 32), nn.Tanh())
        anchors = torch.randn(k, 12)
        bridge = ModuleBridgeForClassification.from_module(base, anchors=anchors, num_labels=3).eval()
        bridge.save_pretrained({str(tmp_path)!r})
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # address space capped 1.5 GiB above what is mapped now: one k x k float64 matrix (2 GiB) cannot be made
        mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + 1536 * 2**20, resource.RLIM_INFINITY))
        other = nn.Sequential(base, nn.Linear(32, 32))
        stitched = ModuleBridgeForClassification.from_pretrained({str(tmp_path)!r}, module=other).eval()
        report = compute_stitch_report(
            bridge.anchor_embeddings, stitched.anchor_embeddings, ["cosine", "l1"], "standard"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"grew_mib": (peak - start) / 1024, "score": stitched.config.head.alignment["stitch_score"],
                           "report": report.score}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["grew_mib"] < 700, result  # one 16,384^2 float64 matrix alone is 2,048 MiB
    assert 0 < result["score"] <= 1 and 0 <= result["report"] <= 1
