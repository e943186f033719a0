"""The anchor-embedding cache reused by re-attaches: keyed by encoder snapshot and exact anchor inputs; atomic."""

from __future__ import annotations

import torch

from hf_bridges.heads.anchor_cache import AnchorCache, anchor_key, encoder_identity


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (6, 9), generator=g)
    return ids, torch.ones_like(ids)


def test_round_trip_and_key_covers_inputs_and_identity(tmp_path, tiny_encoder_dir):
    identity = encoder_identity(tiny_encoder_dir, None, "mean", 128, torch.float32)
    assert identity is not None and identity["revision"].startswith("local-")
    ids, mask = _inputs()
    key = anchor_key(identity, ids, mask)
    cache = AnchorCache(tmp_path)
    assert cache.get(key, 6) is None
    embeddings = torch.randn(6, 32)
    cache.put(key, embeddings)
    torch.testing.assert_close(cache.get(key, 6), embeddings, rtol=0, atol=0)
    other_ids = ids.clone()
    other_ids[0, 0] += 1  # one token differs (another tokenizer or text): another entry
    assert anchor_key(identity, other_ids, mask) != key
    assert anchor_key({**identity, "pooling": "cls"}, ids, mask) != key
    assert anchor_key({**identity, "dtype": "torch.bfloat16"}, ids, mask) != key
    assert not list(tmp_path.glob(".*.tmp"))  # no staging leftovers


def test_corrupt_or_mismatching_entries_are_ignored_and_rewritten(tmp_path):
    cache = AnchorCache(tmp_path)
    cache.path("k").parent.mkdir(parents=True, exist_ok=True)
    cache.path("k").write_bytes(b"not safetensors")
    assert cache.get("k", 6) is None
    cache.put("k", torch.full((6, 4), float("nan")))
    assert cache.get("k", 6) is None  # non-finite: refused
    cache.put("k", torch.randn(5, 4))
    assert cache.get("k", 6) is None  # wrong anchor count
    cache.put("k", torch.randn(6, 4))
    assert cache.get("k", 6).shape == (6, 4)


def test_unpinned_encoder_is_not_cached(monkeypatch):
    assert encoder_identity("no-such-org/no-such-model", None, "mean", 128, torch.float32) is None
