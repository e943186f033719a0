"""``IndexBridge.evaluate`` / ``hf-bridges index evaluate``: retention measured on labelled queries, on real
sentence-transformers encoders (tiny random BERTs saved as sentence-transformers folders, one an exact rotation of
another, one with a query prompt): a rotated copy keeps everything, shuffled stored vectors keep next to nothing,
known-item and explicit relevance agree, several relevant documents per query score as sentence-transformers'
``InformationRetrievalEvaluator`` scores them, ceiling B is ``retrieval_metrics`` of the new encoder on both sides,
every bad input is one error before anything is embedded, and the CLI's gate exits 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_encoder, st_folder, topic_texts

from hf_bridges.cli import main as cli
from hf_bridges.retrieval import (
    IndexBridge,
    IndexBridgeError,
    RetentionGateError,
    RetentionMeasurement,
    retrieval_metrics,
)

st = pytest.importorskip("sentence_transformers")

TEXTS = topic_texts(24, seed=5, noise_words=3)[0]  # 120 unlabelled paired texts to fit on
DOCUMENTS = topic_texts(16, seed=7, topic_words=8, noise_words=4)[0]  # 80 labelled documents
QUERIES = [" ".join(d.split()[:5]) for d in DOCUMENTS]  # query i: the first words of document i (known-item)
K = 5


def permuted(bert, perm: np.ndarray):
    """The same BERT with its hidden units permuted (an orthogonal map that every layer, LayerNorm included, commutes
    with): its token vectors, and so its pooled sentence vectors, are the original's with their axes permuted."""
    p = torch.as_tensor(perm)
    state = {}
    for name, t in bert.state_dict().items():
        inputs = ("_embeddings.weight", "query.weight", "key.weight", "value.weight", "intermediate.dense.weight")
        if name.endswith(inputs):
            t = t[:, p]
        elif name.endswith(("output.dense.weight", "pooler.dense.weight")):
            t = t[p][:, p] if name.startswith("pooler") else t[p]
        elif "LayerNorm" in name or name.endswith(("output.dense.bias", "pooler.dense.bias")):
            t = t[p]
        state[name] = t.clone()
    bert.load_state_dict(state)
    return bert


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate-encoders")
    return {
        "old": st_folder(root, "old", 0, 32),
        # the old encoder with its axes permuted (a rotation): a bridge to it has nothing to lose
        "rotated": st_folder(
            root, "rotated", 0, 32, encoder=permuted(make_encoder(0), np.random.default_rng(0).permutation(32))
        ),
        "new": st_folder(root, "new", 1, 48, prompts={"query": "the a ", "document": ""}),
    }


@pytest.fixture(scope="module")
def bridges(encoders):
    torch.set_num_threads(1)
    return {
        "rotated": IndexBridge.fit(encoders["old"], encoders["rotated"], TEXTS),
        "new": IndexBridge.fit(encoders["old"], encoders["new"], TEXTS),
    }


def model(path):
    return st.SentenceTransformer(path, device="cpu")


def flat(nested: dict) -> dict:
    """``{"query": {"recall@5": x}}`` -> ``{"query recall@5": x}``, for ``pytest.approx``."""
    return {f"{outer} {inner}": v for outer, values in nested.items() for inner, v in values.items()}


def test_a_rotated_copy_of_the_old_encoder_retains_everything(bridges):
    measured = bridges["rotated"].evaluate(QUERIES, DOCUMENTS, k=K)
    assert isinstance(measured, RetentionMeasurement) and measured.queries == measured.documents == len(QUERIES)
    reembed = measured.metrics["reembed"][f"recall@{K}"]
    assert 0.3 < reembed < 1.0  # a search that can fail: the measurement can tell
    for side in ("query", "migrate"):
        r = measured.retention[side]
        assert r["estimate"] == pytest.approx(1.0, abs=0.02) and r["low"] <= 1.0 <= r["high"], (side, r)
    assert "re-embedded with " + bridges["rotated"].old["name_or_path"] in measured.old_vectors


def test_shuffled_stored_vectors_retain_next_to_nothing(bridges, encoders):
    """The stored vectors given (``old_vectors``) are what is measured: the old encoder's own vectors reproduce the
    re-embedding path exactly, and the same vectors in the wrong rows (an index whose ids no longer match its
    documents) keep a small fraction of what re-embedding finds, the interval far below 1."""
    bridge = bridges["new"]
    stored = model(encoders["old"]).encode(DOCUMENTS, convert_to_numpy=True)
    given = bridge.evaluate(QUERIES, DOCUMENTS, k=K, old_vectors=stored)
    embedded = bridge.evaluate(QUERIES, DOCUMENTS, k=K)
    assert given.old_vectors == "given" and flat(given.metrics) == pytest.approx(flat(embedded.metrics))
    assert flat(given.retention) == pytest.approx(flat(embedded.retention))
    assert given.retention["query"]["estimate"] > 0.6
    shuffled = stored[np.random.default_rng(1).permutation(len(stored))]
    lost = bridge.evaluate(QUERIES, DOCUMENTS, k=K, old_vectors=shuffled)
    for side in ("query", "migrate"):
        assert lost.retention[side]["high"] < 0.3, lost.retention
    assert lost.metrics["reembed"] == given.metrics["reembed"]  # the new encoder's own index is untouched


def test_known_item_equals_explicit_relevance_in_any_document_order(bridges):
    bridge = bridges["new"]
    known = bridge.evaluate(QUERIES, DOCUMENTS, k=K)
    assert bridge.evaluate(QUERIES, DOCUMENTS, list(range(len(QUERIES))), k=K).metrics == known.metrics
    assert bridge.evaluate(QUERIES, DOCUMENTS, [[i] for i in range(len(QUERIES))], k=K).metrics == known.metrics
    order = np.random.default_rng(2).permutation(len(DOCUMENTS))  # documents[j] = DOCUMENTS[order[j]]
    where = np.argsort(order)
    moved = bridge.evaluate(QUERIES, [DOCUMENTS[j] for j in order], [int(where[i]) for i in range(len(QUERIES))], k=K)
    assert flat(moved.metrics) == pytest.approx(flat(known.metrics)) and flat(moved.retention) == pytest.approx(
        flat(known.retention)
    )


def test_ceiling_b_and_the_query_side_are_retrieval_metrics_of_the_encoders_vectors(bridges, encoders):
    """Ceiling B is the new encoder on both sides (query prompt for queries, document prompt for documents), the
    query side the bridge's mapped queries against the old encoder's documents, the retention their Recall@k's ratio,
    and the label-free estimate is reported next to it."""
    bridge = bridges["new"]
    measured = bridge.evaluate(QUERIES, DOCUMENTS, k=K)
    new, old = model(encoders["new"]), model(encoders["old"])
    q_new = new.encode(QUERIES, prompt_name="query", convert_to_numpy=True)
    d_new, d_old = new.encode(DOCUMENTS, convert_to_numpy=True), old.encode(DOCUMENTS, convert_to_numpy=True)
    assert measured.metrics["reembed"] == pytest.approx(retrieval_metrics(q_new, d_new, k=K), abs=1e-9)
    assert measured.metrics["query"] == pytest.approx(retrieval_metrics(bridge.map_queries(q_new), d_old, k=K))
    assert measured.metrics["migrate"] == pytest.approx(retrieval_metrics(q_new, bridge.migrate(d_old), k=K))
    from_vectors = bridge.evaluate_embeddings(q_new, d_new, d_old, k=K)  # as fit_embeddings to fit
    assert flat(from_vectors.metrics) == pytest.approx(flat(measured.metrics))
    assert flat(from_vectors.retention) == pytest.approx(flat(measured.retention))
    recall = {s: measured.metrics[s][f"recall@{K}"] for s in ("query", "migrate", "reembed")}
    for side in ("query", "migrate"):
        r = measured.retention[side]
        assert r["estimate"] == pytest.approx(recall[side] / recall["reembed"])
        assert r["low"] < r["estimate"] < r["high"]  # an interval from 80 queries has a width
    assert measured.expected == bridge.retention and measured.expected["query"].k == 10
    text = str(measured)
    assert "ceiling B" in text and "label-free, query side: expected retention@10" in text
    assert (
        json.loads(json.dumps(measured.to_dict()))["expected"]["query"]["estimate"]
        == bridge.retention["query"].estimate
    )
    # the seed moves the interval, not the point; the same seed repeats it
    again, other = (bridge.evaluate(QUERIES, DOCUMENTS, k=K, seed=s).retention["query"] for s in (0, 1))
    assert again == measured.retention["query"] and other["estimate"] == again["estimate"] and other != again


def test_several_relevant_documents_score_as_sentence_transformers_does(bridges):
    """Recall@k is the share of a query's relevant documents in its top k, nDCG@k has binary gains over the ideal
    ranking of its relevant documents, MRR the first relevant document's reciprocal rank: the figures of
    sentence-transformers' InformationRetrievalEvaluator (MRR@len(corpus)) on the same scores."""
    try:
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.evaluation import InformationRetrievalEvaluator

    rng = np.random.default_rng(3)
    q, d = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(70, 8)).astype(np.float32)
    relevant = [rng.choice(70, size=rng.integers(1, 5), replace=False).tolist() for _ in range(40)]
    evaluator = InformationRetrievalEvaluator(
        {str(i): f"q{i}" for i in range(40)},
        {str(j): f"d{j}" for j in range(70)},
        {str(i): {str(j) for j in r} for i, r in enumerate(relevant)},
        mrr_at_k=[70],
        ndcg_at_k=[K],
        precision_recall_at_k=[K],
        accuracy_at_k=[K],
        map_at_k=[K],
    )
    scores = q @ d.T
    results = [[{"corpus_id": str(j), "score": float(s[j])} for j in range(70)] for s in scores]
    reference = evaluator.compute_metrics(results)
    ours = retrieval_metrics(q, d, relevant, k=K)
    assert ours[f"recall@{K}"] == pytest.approx(reference["recall@k"][K])
    assert ours[f"ndcg@{K}"] == pytest.approx(reference["ndcg@k"][K])
    assert ours["mrr"] == pytest.approx(reference["mrr@k"][70])
    # through evaluate: two relevant documents per query, each counting half of its recall
    bridge, n = bridges["new"], len(QUERIES)
    both = bridge.evaluate(QUERIES, DOCUMENTS, [[i, (i + 1) % n] for i in range(n)], k=K).metrics["reembed"]
    one = [bridge.evaluate(QUERIES, DOCUMENTS, [(i + s) % n for i in range(n)], k=K).metrics["reembed"] for s in (0, 1)]
    assert both[f"recall@{K}"] == pytest.approx((one[0][f"recall@{K}"] + one[1][f"recall@{K}"]) / 2)
    assert both["mrr"] >= max(one[0]["mrr"], one[1]["mrr"])


def test_the_gate_on_measured_retention(bridges):
    measured = bridges["new"].evaluate(QUERIES, DOCUMENTS, k=K)
    r = measured.retention["query"]
    measured.check(r["estimate"] - 0.01)
    measured.check(r["low"] - 0.01, bound="low")
    with pytest.raises(RetentionGateError, match=rf"below the required {r['estimate'] + 0.01:.3f} .*re-embed the"):
        measured.check(r["estimate"] + 0.01)
    with pytest.raises(RetentionGateError, match=r"\(low\).*label more queries to narrow the interval"):
        measured.check((r["low"] + r["estimate"]) / 2, bound="low")
    m = measured.retention["migrate"]["estimate"]
    with pytest.raises(RetentionGateError, match="migrate-side"):
        measured.check(m + 0.01, side="migrate")
    with pytest.raises(ValueError, match="side must be"):
        measured.check(0.5, side="both")


def test_an_old_encoder_that_no_longer_embeds_as_the_index_did_is_refused(encoders, tmp_path, one_thread):
    """evaluate re-embeds the documents with the recorded old encoder: a folder since overwritten with another model
    (same name, same width) would measure against an index that does not exist; its stored vectors do not lie."""
    import shutil

    old = shutil.copytree(encoders["old"], tmp_path / "old")
    bridge = IndexBridge.fit(str(old), encoders["new"], TEXTS, translation="rotation")
    assert bridge.evaluate(QUERIES, DOCUMENTS, k=K).queries == len(QUERIES)  # the same encoder: 1.000, measured
    stored = model(str(old)).encode(DOCUMENTS, convert_to_numpy=True)
    shutil.rmtree(old)
    st_folder(tmp_path, "old", 5, 32)  # another 32-d model where the old one was
    with pytest.raises(IndexBridgeError, match=r"embeds the bridge's first 32 paired texts unlike the vectors stored"):
        bridge.evaluate(QUERIES, DOCUMENTS, k=K)
    measured = bridge.evaluate(QUERIES, DOCUMENTS, old_vectors=stored, k=K)  # the index's own vectors: measured
    assert measured.old_vectors == "given"


def test_bad_inputs_are_one_clear_error_before_anything_is_embedded():
    """The encoders this bridge records do not exist: any error raised after loading one would name it instead."""
    rng = np.random.default_rng(4)
    old, new = rng.normal(size=(60, 32)), rng.normal(size=(60, 48))
    bridge = IndexBridge.fit_embeddings(
        old, new, old_encoder={"name_or_path": "no/such-old"}, new_encoder={"name_or_path": "no/such-new"}
    )
    q, d = ["a b", "c d", "e f"], ["a", "b", "c", "d"]
    cases = [
        (("a query", d), {}, "queries must be a list of texts, got one string"),
        (([], d), {}, "no queries"),
        ((q, []), {}, "no documents"),
        ((["a", " ", "b"], d), {}, r"queries\[1\] is ' ', not a text"),
        ((q, d), {}, "3 queries and 4 documents: without relevant=, query i's relevant document is documents"),
        ((q, d, [0, 1]), {}, "relevant has 2 entries for 3 queries"),
        ((q, d, [0, 9, 1]), {}, r"relevant\[1\] = 9 is out of range: there are 4 documents \(indices 0-3\)"),
        ((q, d, [0, [], 1]), {}, r"relevant\[1\] is empty"),
        ((q, d, [0, "2", 1]), {}, r"relevant\[1\] is '2': give a document index"),
        ((q, d, [0, [1.5], 1]), {}, r"relevant\[1\] holds 1.5, not a document index"),
        ((q, d, [0, 1, 2]), {"k": 0}, "k must be a whole number >= 1, got 0"),
        ((q, d, [0, 1, 2]), {"confidence": 95}, "confidence must be between 0 and 1"),
        (
            (q, d, [0, 1, 2]),
            {"old_vectors": np.ones((4, 48))},
            "old_vectors are 48-d but this bridge's old encoder "
            "no/such-old is 32-d .*they look like no/such-new's 48-d vectors",
        ),
        ((q, d, [0, 1, 2]), {"old_vectors": np.ones((3, 32))}, "old_vectors has 3 rows for 4 documents"),
        ((q, d, [0, 1, 2]), {"old_vectors": np.ones(32)}, r"old_vectors must be a 2-D array .*got shape \(32,\)"),
        ((q, d, [0, 1, 2]), {"old_vectors": np.full((4, 32), np.nan)}, "old_vectors holds NaN"),
        ((q, d, [0, 1, 2]), {}, "cannot load the bridge's old encoder no/such-old .*: pass old_vectors="),
    ]
    for args, options, message in cases:
        with pytest.raises(IndexBridgeError, match=message):
            bridge.evaluate(*args, **{"k": 3, **options})  # k below the 4 documents: a search that can miss
    docs = np.ones((4, 48))
    for args, message in [
        ((np.ones((3, 32)), docs, np.ones((4, 32)), [0, 1, 2]), "query vectors are 32-d but this bridge's new"),
        ((np.ones((3, 48)), np.ones((4, 32)), np.ones((4, 32)), [0, 1, 2]), "new_documents are 32-d but this"),
        ((np.ones((3, 48)), docs, np.ones((3, 32)), [0, 1, 2]), "old_vectors has 3 rows for 4 documents"),
        ((np.ones((3, 48)), docs, np.ones((4, 32)), [0, 4, 1]), r"relevant\[1\] = 4 is out of range"),
    ]:
        with pytest.raises(IndexBridgeError, match=message):
            bridge.evaluate_embeddings(*args, k=3)
    unnamed = IndexBridge.fit_embeddings(old, new, estimate=False)
    with pytest.raises(IndexBridgeError, match="records no old encoder to embed the documents with: pass old_vectors="):
        unnamed.evaluate(q, d, [0, 1, 2], k=3)
    # a search of k or fewer documents finds them all: retention would read 1 whatever the bridge does
    with pytest.raises(IndexBridgeError, match="4 documents and k=10: every system finds every document"):
        bridge.evaluate(q, d, [0, 1, 2])
    with pytest.raises(IndexBridgeError, match="4 documents and k=4"):
        bridge.evaluate_embeddings(np.ones((3, 48)), docs, np.ones((4, 32)), [0, 1, 2], k=4)


def test_a_handful_of_queries_is_measured_with_a_warning(bridges):
    """One query gave a 1.000 (1.000-1.000) interval: a bootstrap over so few queries understates the uncertainty."""
    with pytest.warns(UserWarning, match="3 labelled queries: the interval of so few understates the uncertainty"):
        measured = bridges["new"].evaluate(QUERIES[:3], DOCUMENTS, [0, 1, 2], k=K)
    assert measured.queries == 3


# ------------------------------------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def files(bridges, encoders, tmp_path_factory):
    """A saved bridge, labelled pairs (the last query on two rows: two relevant documents), distractors, and the old
    index's stored vectors of the pairs' documents then the distractors."""
    root = tmp_path_factory.mktemp("evaluate-cli")
    import pandas as pd

    queries, documents = [*QUERIES[:60], QUERIES[59]], [*DOCUMENTS[:60], DOCUMENTS[0]]
    pd.DataFrame({"query": queries, "document": documents}).to_csv(root / "pairs.csv", index=False)
    (root / "distractors.txt").write_text("\n".join(DOCUMENTS[60:]) + "\n")
    stored = model(encoders["old"]).encode([*documents, *DOCUMENTS[60:]], convert_to_numpy=True)
    np.save(root / "old.npy", stored)
    np.save(root / "short.npy", stored[:-1])
    bridge = str(bridges["new"].save_pretrained(root / "bridge"))
    return {"root": root, "bridge": bridge, "pairs": str(root / "pairs.csv"), "docs": str(root / "distractors.txt")}


def test_cli_evaluate_measures_what_the_method_does(files, bridges, capsys, one_thread):
    argv = ["index", "evaluate", files["bridge"], "--pairs", files["pairs"], "--documents", files["docs"], "--k", "5"]
    out = files["root"] / "measured.json"
    assert cli([*argv, "--json", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    relevant = [[i] for i in range(59)] + [[59, 0]]  # the last query's two rows; DOCUMENTS[0] given twice is one
    expected = bridges["new"].evaluate(QUERIES[:60], DOCUMENTS, relevant, k=K)
    assert printed["queries"] == 60 and printed["documents"] == 80
    assert flat(printed["metrics"]) == pytest.approx(flat(expected.metrics)) and flat(
        printed["retention"]
    ) == pytest.approx(flat(expected.retention))
    assert printed["expected"]["query"]["estimate"] == pytest.approx(bridges["new"].retention["query"].estimate)
    assert cli([*argv, "--old-vectors", str(files["root"] / "old.npy"), "--json"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert given["old_vectors"] == "given" and flat(given["metrics"]) == pytest.approx(flat(expected.metrics))
    r = expected.retention["query"]["estimate"]
    assert cli([*argv, "--min-retention", f"{r - 0.01:.4f}"]) == 0
    text = capsys.readouterr().out
    assert "ceiling B (re-embedded)" in text and "label-free, query side" in text and "gate passed" in text
    assert cli([*argv, "--min-retention", f"{r + 0.01:.4f}"]) == 3
    assert "gate FAILED: measured query-side retention@5" in capsys.readouterr().out


def test_cli_evaluate_refuses_bad_files_before_embedding(files, tmp_path, capsys):
    argv = ["index", "evaluate", files["bridge"], "--pairs", files["pairs"], "--documents", files["docs"]]
    (tmp_path / "pairs.txt").write_text("a query\n")
    (tmp_path / "other.csv").write_text("question,answer\nq,a\n")
    cases = [
        ([*argv, "--old-vectors", str(files["root"] / "short.npy")], "short.npy holds 80 vectors for 81 documents"),
        ([*argv, "--old-vectors", files["pairs"]], "pairs.csv is not a .npy file: index evaluate reads one"),
        ([*argv, "--output", str(tmp_path)], "is a folder; give a file path"),
        (["index", "evaluate", files["bridge"], "--pairs", str(tmp_path / "pairs.txt")], "a .txt file is not read"),
        (["index", "evaluate", files["bridge"], "--pairs", str(tmp_path / "other.csv")], "has no column 'query'"),
        (
            ["index", "evaluate", files["bridge"], "--pairs", str(tmp_path / "no.csv")],
            "--pairs " + str(tmp_path / "no.csv") + ": no such file",
        ),
        ([*argv[:-1], str(tmp_path / "none.txt")], "--documents " + str(tmp_path / "none.txt") + ": no such file"),
    ]
    for args, message in cases:
        assert cli(args) == 1
        err = capsys.readouterr().err
        assert message in err, err


@pytest.mark.subprocess
def test_cli_evaluate_gate_exits_3_in_a_fresh_process(files):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    argv = ["index", "evaluate", files["bridge"], "--pairs", files["pairs"], "--json", "--min-retention", "1.5"]
    done = subprocess.run(
        [sys.executable, "-m", "hf_bridges.cli", *argv], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert json.loads(done.stdout)["k"] == 10 and "gate FAILED" in done.stderr
