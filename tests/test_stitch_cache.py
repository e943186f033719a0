"""The embedding cache: keyed by what changes embeddings, not by heads; interrupted runs resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv

from hf_bridges.stitching import cache as cache_module
from hf_bridges.stitching import parse_config, run_stitch
from hf_bridges.stitching.cache import EmbeddingCache, cache_key
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.encoder_kinds import HFTextEncoder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("stitch-cache")
    encoders = [
        save_tiny_encoder(root / "enc-a", seed=0, hidden_size=32),
        save_tiny_encoder(root / "enc-b", seed=1, hidden_size=48),
    ]
    return tiny_config(encoders, write_topic_csv(root / "topics.csv")), root


def test_key_covers_pooling_max_length_prefix(world):
    encoder = world[0]["encoders"][0]["id"]
    kind = HFTextEncoder()
    base = kind.identity(EncoderSpec(id=encoder))
    assert base["revision"].startswith("local-")
    same = cache_key(kind.identity(EncoderSpec(id=encoder, batch_size=7, name="other")), "fp")
    assert same == cache_key(base, "fp")  # batch size and display name do not change embeddings
    for change in ({"pooling": "cls"}, {"max_seq_length": 64}, {"prefix": "passage: "}):
        assert cache_key(kind.identity(EncoderSpec(id=encoder, **change)), "fp") != cache_key(base, "fp"), change
    assert cache_key(base, "other-dataset") != cache_key(base, "fp")


def test_second_run_reembeds_nothing_and_head_changes_do_not_invalidate(world, tmp_path):
    base, _ = world
    cache_dir = tmp_path / "cache"
    first = run_stitch(parse_config(copy.deepcopy(base)), tmp_path / "run1", cache_dir=str(cache_dir), quiet=True)
    assert all(s["rows_embedded"] == 60 + 20 for s in first["cache"]["per_encoder"].values())
    changed = copy.deepcopy(base)
    changed["head"] = {"classifier_hidden_size": 32, "subspace_norm": "none"}
    changed["methods"] = [{"name": "l1", "projections": ["l1"]}]
    changed["training"] = {"num_epochs": 1}
    second = run_stitch(parse_config(changed), tmp_path / "run2", cache_dir=str(cache_dir), quiet=True)
    assert all(s["rows_embedded"] == 0 and s["rows_cached"] == 80 for s in second["cache"]["per_encoder"].values())
    assert len(list(cache_dir.iterdir())) == 4  # 2 encoders x 2 splits
    pooled = copy.deepcopy(changed)
    pooled["encoders"][1]["pooling"] = "max"
    third = run_stitch(parse_config(pooled), tmp_path / "run3", cache_dir=str(cache_dir), quiet=True)
    assert third["cache"]["per_encoder"]["enc0"]["rows_embedded"] == 0
    assert third["cache"]["per_encoder"]["enc1"]["rows_embedded"] == 80


def test_interrupted_embedding_resumes(world, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(cache_module, "SHARD_ROWS", 8)
    spec = EncoderSpec(id=world[0]["encoders"][0]["id"], max_seq_length=16)
    kind = HFTextEncoder()
    identity = kind.identity(spec)
    data = datasets.Dataset.from_dict({"text": [f"market film vote {i}" for i in range(30)]})
    embed = kind.load(spec)
    calls = {"n": 0}

    def flaky_loader():
        def flaky(batch):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("simulated interruption")
            return embed(batch)

        return flaky

    store = EmbeddingCache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        store.embeddings(identity, data, "text", flaky_loader, batch_size=8, progress=False)
    folder = store.folder(identity, data._fingerprint)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "shard-00000000",
        "shard-00000008",
    ]
    assert not store.is_complete(identity, data._fingerprint)
    stats: dict = {}
    resumed = store.embeddings(identity, data, "text", lambda: embed, batch_size=8, stats=stats, progress=False)
    assert stats == {"rows_embedded": 14, "rows_cached": 16}
    fresh = EmbeddingCache(tmp_path / "fresh").embeddings(
        identity, data, "text", lambda: embed, batch_size=8, progress=False
    )
    np.testing.assert_allclose(resumed, fresh, atol=1e-6)
    assert store.is_complete(identity, data._fingerprint)


def test_a_length_sorting_embed_gets_whole_windows_not_batches(world, tmp_path):
    """Issue 21.1: the hf_text embed sorts the rows of one call by length, so the cache hands it a window of many
    shards; a 32-row call only ever sorted 32 rows. Other embed functions still get ``batch_size`` rows a call."""
    import datasets

    spec = EncoderSpec(id=world[0]["encoders"][0]["id"], max_seq_length=32, batch_size=8)
    kind = HFTextEncoder()
    embed = kind.load(spec)
    assert embed.sorts_rows
    words = "market film vote bank team goal".split()
    texts = [" ".join(words[: 1 + i % 6] * (1 + i % 5)) for i in range(600)]
    data = datasets.Dataset.from_dict({"text": texts})
    sizes: list[int] = []

    def recording(batch):
        sizes.append(len(batch["text"]))
        return embed(batch)

    recording.sorts_rows = True
    store = EmbeddingCache(tmp_path / "cache")
    values = store.embeddings(kind.identity(spec), data, "text", lambda: recording, batch_size=8, progress=False)
    assert sizes == [600]
    assert len([p for p in store.folder(kind.identity(spec), data._fingerprint).iterdir() if p.name[:6] == "shard-"])
    one_by_one = np.concatenate([embed({"text": [t]}) for t in texts[:40]])
    np.testing.assert_allclose(values[:40], one_by_one, atol=1e-5)

    sizes.clear()
    recording.sorts_rows = False
    EmbeddingCache(tmp_path / "plain").embeddings(
        kind.identity(spec), data, "text", lambda: recording, batch_size=8, progress=False
    )
    assert set(sizes) == {8}
