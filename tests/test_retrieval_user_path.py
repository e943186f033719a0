"""The index bridge on a user's path: figures that must not move, memory that must stay bounded, and bad input that
must be one clear ``HfBridgesError`` (never a numpy / torch traceback, a silent NaN or a half-written file)."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hub_server import TOKEN, hub_fixture

from hf_bridges.cli import main as cli
from hf_bridges.retrieval import IndexBridge, IndexBridgeError
from hf_bridges.retrieval.estimate import BOOTSTRAP_CHUNK, retention_from_hits

hub = pytest.fixture(hub_fixture)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic(n_pairs: int = 200, n_docs: int = 300, n_queries: int = 500, seed: int = 0):
    """Two linear views (12-d old, 20-d new) of a 16-d latent; a ridge bridge on ``n_pairs`` paired vectors; noisy
    queries of random documents with their relevant index."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_pairs + n_docs, 16)).astype(np.float32)
    mix_old = rng.standard_normal((16, 12)).astype(np.float32)
    mix_new = rng.standard_normal((16, 20)).astype(np.float32)
    old, new = _unit(latent @ mix_old), _unit(latent @ mix_new)
    bridge = IndexBridge.fit_embeddings(old[:n_pairs], new[:n_pairs], translation="ridge", estimate=False)
    relevant = rng.integers(0, n_docs, n_queries)
    noisy = latent[n_pairs:][relevant] + 0.7 * rng.standard_normal((n_queries, 16)).astype(np.float32)
    return bridge, _unit(noisy @ mix_new), new[n_pairs:], old[n_pairs:], [int(r) for r in relevant]


# evaluate_embeddings' retention on synthetic(), as the all-at-once bootstrap computed it before it was chunked
BEFORE = {
    (10, 0, 1000, 0.95): {
        "query": (0.9318181818181819, 0.9028861708547768, 0.9604187240124741),
        "migrate": (0.8471074380165289, 0.8119804078149031, 0.8810481651977183),
    },
    (5, 3, 777, 0.9): {
        "query": (0.8946236559139784, 0.8628443782576322, 0.9282608695652174),
        "migrate": (0.7806451612903225, 0.7472036505428125, 0.815450643776824),
    },
}


@pytest.mark.parametrize("options", list(BEFORE))
def test_the_chunked_bootstrap_gives_the_same_figures_as_before(options):
    k, seed, resamples, confidence = options
    bridge, queries, documents, stored, relevant = synthetic()
    measured = bridge.evaluate_embeddings(
        queries, documents, stored, relevant, k=k, seed=seed, resamples=resamples, confidence=confidence
    )
    for side, figures in BEFORE[options].items():
        r = measured.retention[side]
        assert (r["estimate"], r["low"], r["high"]) == figures  # bit for bit


def _all_at_once(hit, reembed, seed, resamples, confidence):
    """The bootstrap as it was before it was chunked: every resample drawn at once."""
    draws = np.random.default_rng(seed + 1).integers(0, hit.size, size=(resamples, hit.size))
    boot = hit[draws].mean(1) / np.maximum(reembed[draws].mean(1), 1.0 / hit.size)
    tail = (1 - confidence) / 2
    point = hit.mean() / max(reembed.mean(), 1.0 / hit.size)
    return point, np.quantile(boot, tail), np.quantile(boot, 1 - tail)


@pytest.mark.parametrize("n", [1, 7, 200, BOOTSTRAP_CHUNK // 40 + 3, 60_000])
def test_the_chunked_bootstrap_equals_the_all_at_once_one(n):
    rng = np.random.default_rng(n)
    hit, reembed = rng.integers(0, 2, n).astype(float), rng.integers(0, 2, n).astype(float)
    hit[: n // 3] = rng.random(n // 3)  # several relevant documents: shares between 0 and 1
    resamples = 60 if n > 10_000 else 1000
    new = retention_from_hits(hit, reembed=reembed, seed=4, resamples=resamples, confidence=0.9)
    assert (new.estimate, new.low, new.high) == tuple(float(v) for v in _all_at_once(hit, reembed, 4, resamples, 0.9))


def test_sixty_thousand_labelled_queries_are_measured_in_bounded_memory():
    """The bootstrap held resamples x queries indices and two float copies at once (1,000 x 60,000: ~1.4 GB)."""
    bridge, _, documents, stored, _ = synthetic(n_docs=500, n_queries=1)
    rng = np.random.default_rng(1)
    relevant = rng.integers(0, 500, 60_000)
    queries = _unit(documents[relevant] + 0.05 * rng.standard_normal((60_000, 20)).astype(np.float32))
    tracemalloc.start()
    try:
        measured = bridge.evaluate_embeddings(queries, documents, stored, relevant.tolist())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert measured.queries == 60_000 and measured.resamples == 1000
    r = measured.retention["query"]
    assert 0 < r["low"] <= r["estimate"] <= r["high"]
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------------------- bad input, one error
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A saved bridge (ridge maps, with its label-free estimate) on synthetic paired vectors and its folder."""
    rng = np.random.default_rng(2)
    latent = rng.standard_normal((200, 16)).astype(np.float32)
    old = _unit(latent @ rng.standard_normal((16, 12)).astype(np.float32))
    new = _unit(latent @ rng.standard_normal((16, 20)).astype(np.float32))
    texts = [f"paired text {i}" for i in range(200)]
    bridge = IndexBridge.fit_embeddings(old, new, texts=texts, translation="ridge")
    folder = bridge.save_pretrained(tmp_path_factory.mktemp("bridge") / "bridge")
    return bridge, folder, old, new


@pytest.mark.parametrize(
    "call",
    [
        lambda b, i, m: b.gate(float("nan")),
        lambda b, i, m: b.gate("0.9"),
        lambda b, i, m: b.gate(0.9, bound="high"),
        lambda b, i, m: m.check(float("nan")),
        lambda b, i, m: m.check(None),
        lambda b, i, m: m.check(0.5, side="both"),
        lambda b, i, m: b.evaluate_embeddings(*i, seed=None),
        lambda b, i, m: b.evaluate_embeddings(*i, seed=-2),
    ],
    ids=["gate-nan", "gate-str", "gate-bound", "check-nan", "check-none", "check-side", "seed-none", "seed-negative"],
)
def test_a_malformed_gate_threshold_or_seed_is_one_error_not_a_pass(fitted, call):
    """NaN passed every gate (every comparison with it is false): a CI reading an unset threshold passed; a
    missing or negative bootstrap seed failed inside numpy."""
    bridge, _, old, new = fitted
    inputs = (new[:100], new[100:], old[100:], list(range(50, 100)) * 2)
    measured = bridge.evaluate_embeddings(*inputs)
    with pytest.raises(IndexBridgeError):
        call(bridge, inputs, measured)


def test_the_command_line_refuses_a_nan_threshold(fitted, capsys):
    _, folder, _, _ = fitted
    with pytest.raises(SystemExit) as exit_info:
        cli(["index", "inspect", str(folder), "--min-retention", "nan"])
    assert exit_info.value.code == 2 and "not a retention threshold" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.pop("query_map"),
        lambda r: r.pop("new_encoder"),
        lambda r: r["expected_retention"].__setitem__("query", {"estimate": 0.9}),
        lambda r: r["migrate_map"].__setitem__("length", float("nan")),
    ],
    ids=["no-query-map", "no-new-encoder", "retention-cut", "length-nan"],
)
def test_a_damaged_config_record_is_one_error_never_a_keyerror_or_nan_vectors(fitted, tmp_path, damage):
    """The config is not checksummed (the weights are): a hand-edited record raised KeyError / TypeError, and a NaN
    length loaded and mapped every vector to NaN."""
    _, folder, old, _ = fitted
    copy = tmp_path / "bridge"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "bridge_head_config.json").read_text())
    damage(config["index_bridge"])
    (copy / "bridge_head_config.json").write_text(json.dumps(config))
    with pytest.raises(IndexBridgeError, match="save or push the bridge again"):
        IndexBridge.from_pretrained(copy).migrate(old)


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.map_queries(np.array([["a"] * 20], dtype=object)),
        lambda b: b.migrate([["x"] * 12]),
        lambda b: list(b.migrate_batches(None)),
        lambda b: list(b.migrate_batches([np.array([["x"] * 12])])),
        lambda b: list(b.migrate_batches(np.array([["x"] * 12]))),
    ],
    ids=["map-object", "migrate-strings", "batches-none", "batches-string-page", "batches-string-array"],
)
def test_vectors_that_are_not_numbers_are_one_error(fitted, call):
    with pytest.raises(IndexBridgeError, match="stored vectors|query vectors"):
        call(fitted[0])


def test_missing_columns_name_the_option_that_fixes_them(fitted, tmp_path, capsys):
    _, folder, _, _ = fitted
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("question,passage\nwho won,the team won\n")
    assert cli(["index", "evaluate", str(folder), "--pairs", str(pairs)]) == 1
    assert "has no column 'query'" in (err := capsys.readouterr().err) and "--query-column" in err
    assert cli(["index", "evaluate", str(folder), "--pairs", str(pairs), "--query-column", "question"]) == 1
    assert "--document-column" in capsys.readouterr().err
    texts = tmp_path / "texts.csv"
    texts.write_text("body\nsome text\n")
    fit = ["index", "fit", "--old", "a", "--new", "b", "--texts", str(texts), "--output", str(tmp_path / "out")]
    assert cli(fit) == 1 and "--text-column" in capsys.readouterr().err


def test_migrate_refuses_a_missing_input_and_a_folder_output_before_any_work(fitted, tmp_path, capsys):
    _, folder, old, _ = fitted
    assert cli(["index", "migrate", str(folder), str(tmp_path / "nope.npy"), str(tmp_path / "new.npy")]) == 1
    assert "nope.npy does not exist" in capsys.readouterr().err
    np.save(tmp_path / "old.npy", old)
    (tmp_path / "taken").mkdir()
    assert cli(["index", "migrate", str(folder), str(tmp_path / "old.npy"), str(tmp_path / "taken")]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npy", "taken"]  # no temporary file left behind


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A bridge between two real sentence-transformers folders (tiny random BERTs), and the new encoder's folder
    copied where ``snapshot_download`` puts it: ``.../models--org--new/snapshots/<commit>``."""
    from helpers import st_folder, topic_texts

    root = tmp_path_factory.mktemp("encoders")
    old, new = st_folder(root, "old", 0, 32), st_folder(root, "new", 1, 48)
    bridge = IndexBridge.fit(old, new, topic_texts(12, seed=5, noise_words=3)[0], translation="rotation")
    snapshot = root / "hub" / "models--org--new" / "snapshots" / ("0123456789abcdef" * 3)[:40]
    shutil.copytree(new, snapshot)
    return bridge, bridge.save_pretrained(root / "bridge"), str(snapshot)


@pytest.mark.parametrize(
    "queries, says",
    [([], "no queries to encode"), (["a query", None], r"queries\[1\] is None"), (42, "got int"), (b"q", "got bytes")],
    ids=["empty", "none-entry", "int", "bytes"],
)
def test_queries_that_are_not_texts_are_one_error(encoded, queries, says):
    """An empty list read as "query vectors are 0-d"; None, an int or bytes raised sentence-transformers' or
    Python's own errors."""
    with pytest.raises(IndexBridgeError, match=says):
        encoded[0].encode(queries)


def test_the_new_encoder_from_its_cache_snapshot_folder_is_the_recorded_one(encoded):
    """snapshot_download's folder (.../models--org--new/snapshots/<commit>) was refused as another model (its last
    component, the commit, is not the model's name) and the user was told to refit."""
    bridge, folder, snapshot = encoded
    loaded = IndexBridge.from_pretrained(folder, encoder=snapshot)
    np.testing.assert_allclose(loaded.encode(["alpha beta"]), bridge.encode(["alpha beta"]), atol=1e-6)


@pytest.mark.parametrize(
    "texts, says",
    [
        (" ".join(f"word{i}" for i in range(100)), "got one string"),  # was fitted on its 600 characters
        ([f"text {i}" for i in range(40)] + [None], r"texts\[40\] is None"),  # was embedded as the text "None"
        (["the same text"] * 60, "only 1 distinct"),  # was a degenerate fit with an expected retention of 1.000
    ],
    ids=["one-string", "none-entry", "copies"],
)
def test_fit_refuses_texts_it_would_silently_misread_before_loading_an_encoder(texts, says):
    with pytest.raises(IndexBridgeError, match=says):
        IndexBridge.fit("no/such-old-encoder", "no/such-new-encoder", texts)


def test_a_bridge_folder_pushed_with_head_push_names_its_repo_in_every_usage_line(fitted, hub):
    """``hf-bridges head push`` of a saved bridge retargeted the Python snippet to the repo but left the card's
    ``hf-bridges index inspect path/to/this-head`` / ``index migrate path/to/this-head`` lines pointing nowhere; the
    pulled bridge is the pushed one (real HTTP against the test Hub server)."""
    from huggingface_hub import hf_hub_download

    _, folder, old, _ = fitted
    assert cli(["head", "push", str(folder), "alice/bridge", "--token", TOKEN, "--endpoint", hub.endpoint]) == 0
    card = Path(hf_hub_download("alice/bridge", "README.md", token=TOKEN)).read_text()
    assert "path/to/this-head" not in card
    assert "index inspect alice/bridge " in card and "index migrate alice/bridge " in card
    pulled = IndexBridge.from_pretrained("alice/bridge", token=TOKEN)
    np.testing.assert_array_equal(pulled.migrate(old), IndexBridge.from_pretrained(folder).migrate(old))


def test_a_batch_size_below_one_is_one_error_before_anything_is_embedded(encoded):
    """encode(batch_size=0) raised sentence-transformers' ValueError; fit's too, after loading both encoders."""
    with pytest.raises(IndexBridgeError, match="batch_size must be a positive number"):
        encoded[0].encode(["a query"], batch_size=0)
    with pytest.raises(IndexBridgeError, match="batch_size must be a positive number"):
        IndexBridge.fit("no/such-old-encoder", "no/such-new-encoder", [f"text {i}" for i in range(50)], batch_size=0)


@pytest.mark.parametrize("texts", [[None] * 60, list(range(60)), "x" * 60], ids=["none", "numbers", "one-string"])
def test_fit_embeddings_refuses_texts_a_saved_bridge_could_not_hold(texts):
    """None or numbers were kept, then the saved bridge refused to load ("save the head again", which cannot help);
    one string of the right length was saved as its characters."""
    rng = np.random.default_rng(0)
    with pytest.raises(IndexBridgeError, match="texts"):
        IndexBridge.fit_embeddings(rng.standard_normal((60, 8)), rng.standard_normal((60, 6)), texts=texts)


def test_a_file_that_cannot_be_read_is_one_error_naming_it_never_a_datasets_traceback(fitted, tmp_path, capsys):
    """A csv with an open quote escaped the command line as datasets' DatasetGenerationError traceback; a UTF-16
    .txt and a broken parquet file printed the codec's / Arrow's message without naming the file."""
    _, folder, _, _ = fitted
    (tmp_path / "open-quote.csv").write_text('query,document\n"who won,the team\n')
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not a parquet file")
    (tmp_path / "utf16.txt").write_text("one text\nanother text\n", encoding="utf-16")
    cases = [
        (["index", "evaluate", str(folder), "--pairs", str(tmp_path / "open-quote.csv")], "cannot be read as a .csv"),
        (["index", "evaluate", str(folder), "--pairs", str(tmp_path / "broken.parquet")], "broken.parquet cannot be"),
        (
            ["index", "fit", "--old", "a", "--new", "b", "--texts", str(tmp_path / "utf16.txt"), "--output", "x"],
            "UTF-8",
        ),
    ]
    for argv, says in cases:
        assert cli(argv) == 1
        err = capsys.readouterr().err
        assert says in err and "DatasetGenerationError" not in err, err


@pytest.mark.parametrize("options", [{"k": 0}, {"k": -1}, {"k": 2.5}, {"seed": -1}, {"seed": None}])
def test_fit_options_out_of_range_are_one_error_not_a_meaningless_estimate(options):
    """k=0 fitted a bridge whose expected retention read 0.000 and k=-1 one that read 1.000 (every gate passed);
    a fractional k or a negative / missing seed failed inside numpy."""
    rng = np.random.default_rng(0)
    with pytest.raises(IndexBridgeError, match=f"{next(iter(options))} must be a whole number"):
        IndexBridge.fit_embeddings(rng.standard_normal((100, 8)), rng.standard_normal((100, 6)), **options)
    with pytest.raises(IndexBridgeError, match=f"{next(iter(options))} must be a whole number"):
        IndexBridge.fit("no/such-old-encoder", "no/such-new-encoder", [f"text {i}" for i in range(50)], **options)


def test_a_nan_among_many_stored_vectors_is_named_by_its_row(fitted, tmp_path, capsys):
    """ "stored vectors holds NaN or inf values" left the user to search a million rows for it; nothing is written."""
    bridge, folder, old, _ = fitted
    stored = np.repeat(old, 5, axis=0)
    stored[737, 3] = np.nan
    with pytest.raises(IndexBridgeError, match="stored vectors holds NaN or inf values in row 737 "):
        bridge.migrate(stored, batch_size=64)
    with pytest.raises(IndexBridgeError, match="stored vectors holds NaN or inf values in row 737 "):
        list(bridge.migrate_batches(iter([stored[:700], stored[700:]])))
    queries = np.ones((3, 20))
    queries[2, 4] = np.inf
    with pytest.raises(IndexBridgeError, match="query vectors holds NaN or inf values in row 2 "):
        bridge.map_queries(queries)
    pairs = np.repeat(old, 2, axis=0)
    pairs[41, 0] = -np.inf  # the fit's paired vectors too
    with pytest.raises(IndexBridgeError, match=r"old_vectors holds NaN or inf values in row 41 \(1 row of"):
        IndexBridge.fit_embeddings(pairs, np.repeat(old, 2, axis=0) @ np.eye(old.shape[1]), estimate=False)
    np.save(tmp_path / "old.npy", stored)
    assert cli(["index", "migrate", str(folder), str(tmp_path / "old.npy"), str(tmp_path / "new.npy")]) == 1
    assert "row 737" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["old.npy"]
