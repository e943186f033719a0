"""The index bridge (hf_bridges.retrieval): fit on real sentence-transformers encoders (tiny random BERTs saved as
sentence-transformers folders, one with a query prompt), save / load in a fresh process, encode vs migrate, the
gate (method and CLI exit code), the errors for wrong widths and encoders, Hub push / pull through the local
server; and, marked slow, all-MiniLM-L6-v2 -> paraphrase-MiniLM-L3-v2 on BBC News known-item search."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_encoder, st_folder, topic_texts
from hub_server import TOKEN, hub_fixture

from hf_bridges.cli import main as cli
from hf_bridges.heads.format import CONFIG_NAME, HeadFormatError
from hf_bridges.retrieval import IndexBridge, IndexBridgeError, RetentionGateError, retrieval_metrics
from hf_bridges.retrieval.encoders import load_text_encoder

st = pytest.importorskip("sentence_transformers")

hub = pytest.fixture(hub_fixture)
TEXTS = topic_texts(50, seed=5, noise_words=3)[0]  # 250 unlabelled paired texts
QUERIES = topic_texts(4, seed=99, noise_words=3)[0]
PROMPTS = {"query": "the a ", "document": ""}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("index-bridge-encoders")
    return {
        "old": st_folder(root, "old", 0, 32),
        "new": st_folder(root, "new", 1, 48, PROMPTS),
        "other": st_folder(root, "other", 2, 48),
        "narrow": st_folder(root, "narrow", 3, 24),
    }


@pytest.fixture(scope="module")
def bridge(encoders):
    return IndexBridge.fit(encoders["old"], encoders["new"], TEXTS)


@pytest.fixture(scope="module")
def saved(bridge, tmp_path_factory):
    return str(bridge.save_pretrained(tmp_path_factory.mktemp("bridges") / "bridge"))


def model(path):
    return st.SentenceTransformer(path, device="cpu")


# ------------------------------------------------------------------------------------------ fit / encode / migrate
def test_encode_is_the_new_encoders_query_embedding_mapped_into_the_old_space(bridge, encoders, one_thread):
    new = model(encoders["new"])
    vectors = bridge.encode(QUERIES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(QUERIES), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # the old encoder normalises
    prompted = new.encode(QUERIES, prompt_name="query", convert_to_numpy=True)
    assert not np.allclose(prompted, new.encode(QUERIES, convert_to_numpy=True), atol=1e-3)  # the prompt matters
    np.testing.assert_allclose(vectors, bridge.map_queries(prompted), atol=1e-6)
    assert bridge.encode(QUERIES[0]).shape == (32,)
    # the query map is fitted between the encoders' query embeddings: their prompt is recorded
    assert bridge.old["query_space"] == "separate" and bridge.new["prompts"]["query"] == PROMPTS["query"]


def test_the_bridge_finds_the_old_indexs_documents(bridge, encoders, one_thread):
    """Queries through the bridge find in the old index what the old encoder's own queries find, far better
    than raw new-encoder vectors would (same texts as queries and documents: known-item search)."""
    old, new = model(encoders["old"]), model(encoders["new"])
    docs = TEXTS[:120]
    index = old.encode(docs, convert_to_numpy=True)
    through = retrieval_metrics(bridge.encode(docs), index)["mrr"]
    own = retrieval_metrics(old.encode(docs, convert_to_numpy=True), index)["mrr"]
    raw = new.encode(docs, prompt_name="query", convert_to_numpy=True)[:, :32]
    floor = retrieval_metrics(raw / np.linalg.norm(raw, axis=1, keepdims=True), index)["mrr"]
    assert through > floor + 0.3 and through > 0.6 * own, (through, own, floor)


def test_migrate_matches_its_batches_and_the_map(bridge, encoders, tmp_path, one_thread):
    old_vectors = model(encoders["old"]).encode(TEXTS[:50], convert_to_numpy=True)
    whole = bridge.migrate(old_vectors)
    assert whole.dtype == np.float32 and whole.shape == (50, 48)
    np.testing.assert_allclose(bridge.migrate(old_vectors, batch_size=7), whole, atol=1e-6)
    np.testing.assert_allclose(
        np.concatenate(list(bridge.migrate_batches(iter(np.split(old_vectors, 5))))), whole, atol=1e-6
    )
    # migrated stored vectors and the new encoder's own vectors of the same texts agree far better than chance
    new_docs = model(encoders["new"]).encode(TEXTS[:50], convert_to_numpy=True)
    assert retrieval_metrics(new_docs, whole)["recall@10"] > 0.5
    # the CLI writes the same vectors, reading the input memory-mapped
    np.save(tmp_path / "old.npy", old_vectors)
    folder = bridge.save_pretrained(tmp_path / "b")
    assert (
        cli(
            ["index", "migrate", str(folder), str(tmp_path / "old.npy"), str(tmp_path / "new.npy"), "--batch-size", "8"]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "new.npy"), whole, atol=1e-6)


# ----------------------------------------------------------------------------------------------- save / load
def test_migrate_refuses_what_it_would_misread(bridge, saved, tmp_path, capsys):
    """A batch size below 1 migrated nothing (an index of uninitialised or zero rows, reported as migrated), a 1-D
    vector was sliced into batches read as vectors of the batch's width, and the CLI read a text file as a pickle
    ("load it unsafely with allow_pickle") or failed with a traceback on an .npz archive: each is now one clear
    error, raised before any output file exists."""
    old_vectors = np.asarray(bridge.old_vectors[:20])
    for size in (0, -5, 2.5):
        with pytest.raises(IndexBridgeError, match="batch_size must be a positive number of rows"):
            bridge.migrate(old_vectors, batch_size=size)
    with pytest.raises(IndexBridgeError, match=r"2-D array \(rows, width\), got shape \(32,\) \(one vector"):
        bridge.migrate_batches(old_vectors[0], batch_size=8)
    np.save(tmp_path / "old.npy", old_vectors)
    out = tmp_path / "new.npy"
    with pytest.raises(SystemExit) as done:
        cli(["index", "migrate", saved, str(tmp_path / "old.npy"), str(out), "--batch-size", "-5"])
    assert done.value.code == 2 and "'-5' is not a positive whole number" in capsys.readouterr().err
    (tmp_path / "old.csv").write_text("0.1,0.2\n0.3,0.4\n")
    np.savez(tmp_path / "old.npz", vectors=old_vectors)
    np.save(tmp_path / "one.npy", old_vectors[0])
    np.save(tmp_path / "codes.npy", (old_vectors * 100).astype(np.int8))
    for name, says in [
        ("old.csv", "old.csv is not a .npy file: index migrate reads one (rows, width) float array saved with"),
        ("old.npz", "old.npz is an .npz archive"),
        ("one.npy", "one.npy holds a float32 array of shape (32,): index migrate reads one (rows, width) float array"),
        ("codes.npy", "codes.npy holds a int8 array of shape (20, 32)"),
    ]:
        assert cli(["index", "migrate", saved, str(tmp_path / name), str(out)]) == 1
        err = capsys.readouterr().err
        assert says in err and "pickle" not in err, err
        assert not out.exists()


def test_saved_bridge_loads_in_a_fresh_process(bridge, saved, encoders, tmp_path):
    """A new interpreter loads the folder and the recorded new encoder (by its path), and encodes exactly
    as the fitted bridge does; migrate too."""
    script = """
        import json, sys
        import numpy as np
        from hf_bridges.retrieval import IndexBridge
        b = IndexBridge.from_pretrained(sys.argv[1])
        queries = json.loads(sys.argv[2])
        old = np.asarray(json.loads(sys.argv[3]), dtype=np.float32)
        print(json.dumps({"encode": b.encode(queries).tolist(), "migrate": b.migrate(old).tolist(),
                          "retention": b.expected_retention.estimate}))
    """
    old_vectors = model(encoders["old"]).encode(TEXTS[:5], convert_to_numpy=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=os.getcwd(), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), saved, json.dumps(QUERIES), json.dumps(old_vectors.tolist())],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.asarray(got["encode"]), bridge.encode(QUERIES), atol=1e-5)
    np.testing.assert_allclose(np.asarray(got["migrate"]), bridge.migrate(old_vectors), atol=1e-5)
    assert got["retention"] == pytest.approx(bridge.expected_retention.estimate)


def test_saved_files_and_card_name_both_encoders(bridge, saved, encoders):
    config = json.loads(Path(saved, CONFIG_NAME).read_text())
    record = config["index_bridge"]
    assert config["head_class"] == "IndexBridge" and config["encoder"]["name_or_path"] == encoders["old"]
    assert record["new_encoder"]["name_or_path"] == encoders["new"] and record["new_encoder"]["hidden_size"] == 48
    assert record["old_encoder"]["pooling"] == "mean" and record["old_encoder"]["normalize"] is True
    card = Path(saved, "README.md").read_text()
    assert encoders["old"] in card and encoders["new"] in card and PROMPTS["query"] in card
    assert "Expected retention, query side" in card and "each searching 250 of them" in card
    probe = record["new_encoder"]["probe"]
    assert "embeds the first 32 paired texts again" in card and f"below {probe['mapped_cosine']:.3f} is refused" in card
    loaded = IndexBridge.from_pretrained(saved)
    assert loaded.texts == TEXTS and loaded.query_map.info["map"] == bridge.query_map.info["map"]


def test_push_and_pull_through_the_hub(bridge, hub, tmp_path):
    info = bridge.push_to_hub("alice/index-bridge", token=TOKEN)
    loaded = IndexBridge.from_pretrained("alice/index-bridge", token=TOKEN)
    assert loaded.revision == info.oid
    np.testing.assert_allclose(loaded.query_map.weight, bridge.query_map.weight)
    readme = (tmp_path / "hf-home").rglob("README.md")
    assert any('from_pretrained("alice/index-bridge")' in p.read_text() for p in readme)


# ---------------------------------------------------------------------------------------------------- the gate
def test_gate_method_and_cli_exit_code(bridge, saved, capsys):
    est = bridge.expected_retention
    assert 0.0 <= est.low <= est.estimate <= est.high and est.n == len(TEXTS)  # a ratio: it may pass 1
    above = round(est.estimate + 0.01, 3)
    assert bridge.gate(est.estimate - 0.01) is est
    with pytest.raises(RetentionGateError, match=rf"below the required {above:.3f}.*more paired texts"):
        bridge.gate(above)
    with pytest.raises(RetentionGateError, match="low"):
        bridge.gate(est.low + 1e-3, bound="low")
    assert cli(["index", "inspect", saved, "--min-retention", f"{est.estimate - 0.01:.4f}"]) == 0
    assert "gate passed" in capsys.readouterr().out
    assert cli(["index", "inspect", saved, "--min-retention", f"{above}"]) == 3
    assert "gate FAILED" in capsys.readouterr().out
    assert cli(["index", "inspect", saved, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_encoder"]["hidden_size"] == 48


def test_cli_fit_from_a_text_file(encoders, tmp_path, capsys, one_thread):
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[:120]))
    out = tmp_path / "fitted"
    code = cli(
        ["index", "fit", "--old", encoders["old"], "--new", encoders["other"], "--texts", str(tmp_path / "texts.txt"),
         "--output", str(out), "--min-retention", "1.5"]
    )  # fmt: skip
    assert code == 3 and (out / CONFIG_NAME).is_file()
    assert IndexBridge.from_pretrained(str(out)).new["name_or_path"] == encoders["other"]


@pytest.mark.parametrize("choice", ["ridge", "blend-0.5", "prior-ridge", "contrastive", "orthogonal"])
def test_cli_fit_keeps_the_map_named(encoders, tmp_path, choice, one_thread, capsys):
    """``--translation`` names one map of the default's candidates (plain ridge, a blend) instead of the choice."""
    from hf_bridges.commands.index import BLEND_CHOICES
    from hf_bridges.retrieval.bridge import BLENDS

    assert tuple(f"blend-{w:g}" for w in BLENDS) == BLEND_CHOICES
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[:120]))
    out = tmp_path / "fitted"
    argv = [
        "index",
        "fit",
        "--old",
        encoders["old"],
        "--new",
        encoders["other"],
        "--texts",
        str(tmp_path / "texts.txt"),
    ]
    assert cli([*argv, "--translation", choice, "--output", str(out)]) == 0
    loaded = IndexBridge.from_pretrained(str(out))
    expected = {
        "ridge": "ridge (leave-one-out)",
        "blend-0.5": "plain ridge",
        "prior-ridge": "ridge toward",
        "contrastive": "contrastive",
        "orthogonal": "orthogonal",  # an old name: the attach-time map, said so in the CLI's words
    }[choice]
    if choice == "orthogonal":
        assert "--translation orthogonal is now attach-orthogonal" in capsys.readouterr().err
    for side in (loaded.query_map, loaded.migrate_map):
        assert expected in side.info["map"], side.info


def test_cli_lists_only_todays_translation_names_and_still_reads_the_old_ones(capsys, tmp_path):
    """``index fit --help`` and argparse's errors list today's names only; an old name is read with a warning in the
    CLI's words; a bad name is argparse's error (exit 2) naming the valid ones, before any text or encoder loads."""
    from hf_bridges.commands.index import TRANSLATION_CHOICES
    from hf_bridges.retrieval.bridge import OLD_TRANSLATIONS as OLD_CHOICES

    with pytest.raises(SystemExit) as done:
        cli(["index", "fit", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "{" + ",".join(TRANSLATION_CHOICES) + "}" in text
    for old in OLD_CHOICES:
        assert not re.search(rf"(?<![\w-]){old}(?![\w-])", text), (old, text)
    argv = ["index", "fit", "--old", "no/such-old", "--new", "no/such-new", "--texts", str(tmp_path / "missing.txt")]
    argv += ["--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as done:
        cli([*argv, "--translation", "prior_ridge"])
    err = capsys.readouterr().err
    assert done.value.code == 2
    assert "unknown translation 'prior_ridge' (did you mean 'prior-ridge'?); valid: best, rotation," in err, err
    assert not any(re.search(rf"'{old}'|(?<![\w-]){old},", err) for old in OLD_CHOICES), err
    # an old name parses to today's (the run then stops at the missing text file: nothing loaded before it)
    assert cli([*argv, "--translation", "affine"]) == 1
    err = capsys.readouterr().err
    assert "--translation affine is now attach-affine (deprecated" in err and "missing.txt" in err, err
    from hf_bridges.commands import index  # the CLI's copy of the old names (its parser imports no numpy)

    assert index.OLD_CHOICES == OLD_CHOICES


def test_index_fit_refuses_unreadable_inputs_before_any_encoder_loads(tmp_path, capsys):
    """A --texts suffix datasets does not read was looked up as a Hub dataset of that name ("Couldn't reach 'tsv'
    on the Hub"), an --output that is a file failed only after the whole fit, and --num-texts 0 fitted on nothing:
    each is refused first (the encoders here do not exist: any later failure would name them)."""
    (tmp_path / "texts.tsv").write_text("\n".join(TEXTS[:60]))
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS[:60]))
    (tmp_path / "taken").write_text("a file")
    argv = ["index", "fit", "--old", "no/such-old", "--new", "no/such-new"]
    assert cli([*argv, "--texts", str(tmp_path / "texts.tsv"), "--output", str(tmp_path / "out")]) == 1
    assert "texts.tsv: a .tsv file is not read; give a .txt / .csv / .json" in capsys.readouterr().err
    assert cli([*argv, "--texts", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "taken")]) == 1
    assert "--output " + str(tmp_path / "taken") + " exists and is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli([*argv, "--texts", str(tmp_path / "texts.txt"), "--output", str(tmp_path / "out"), "--num-texts", "0"])
    assert done.value.code == 2 and "'0' is not a positive whole number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and (tmp_path / "taken").read_text() == "a file"


def test_translation_names_say_what_they_fit_and_the_old_ones_still_work(bridge):
    """``"best"`` (the default) keeps the best of every candidate, ``"prior-ridge"`` the ridge toward a prior alone
    (which had no name: ``"prior"`` meant the best of all), ``"attach-*"`` the heads' attach-time map (was
    ``"auto"`` / ``"orthogonal"`` / ``"affine"``, which read as an automatic choice). The old names warn and fit
    the same maps; a typo lists the valid names before anything is fitted."""
    old, new = bridge.old_vectors, np.asarray(bridge.old_vectors) @ np.random.default_rng(3).normal(size=(32, 24))
    fit = lambda name: IndexBridge.fit_embeddings(old, new, translation=name)
    best = fit("best")
    assert set(best.query_map.info["candidates"]) == CANDIDATE_NAMES
    prior_ridge = fit("prior-ridge")
    assert prior_ridge.query_map.info["map"].startswith("ridge toward")
    assert "candidates" not in prior_ridge.query_map.info
    attach = fit("attach-orthogonal")
    assert attach.query_map.info["map"] == "orthogonal"
    for before, now in [("prior", best), ("orthogonal", attach)]:
        with pytest.warns(FutureWarning, match=rf"translation='{before}' is now called"):
            renamed = fit(before)
        np.testing.assert_array_equal(renamed.map_queries(new[:5]), now.map_queries(new[:5]))
        assert renamed.query_map.info["map"] == now.query_map.info["map"]
    with pytest.raises(IndexBridgeError, match=r"unknown translation 'prior_ridge' \(did you mean 'prior-ridge'\?\)"):
        IndexBridge.fit(object(), object(), ["a"], translation="prior_ridge")  # refused before any encoder loads


# ------------------------------------------------------------------------------------------------------ errors
def test_a_mistyped_encoder_or_too_few_texts_fail_before_any_embedding(monkeypatch):
    """Offline, a typo in an encoder id names the closest cached id (it was transformers' "couldn't connect to
    huggingface.co"); too few paired texts are refused before either encoder loads or embeds (it was after both)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(IndexBridgeError, match="'some-org/no-such-encoder' .*is not in the Hugging Face cache"):
        IndexBridge.fit("some-org/no-such-encoder", "some-org/no-such-encoder", TEXTS[:60])
    with pytest.raises(IndexBridgeError, match="20 paired texts are too few"):
        IndexBridge.fit("some-org/no-such-encoder", "some-org/no-such-encoder", TEXTS[:20])


def test_width_mismatches_name_the_encoders(bridge):
    with pytest.raises(IndexBridgeError, match=r"stored vectors are 48-d but .*old encoder .* is 32-d.*look like"):
        bridge.migrate(np.ones((3, 48), np.float32))
    with pytest.raises(IndexBridgeError, match=r"query vectors are 32-d but .*new encoder .* is 48-d"):
        bridge.map_queries(np.ones((3, 32), np.float32))
    with pytest.raises(IndexBridgeError, match="NaN"):
        bridge.migrate(np.full((2, 32), np.nan, np.float32))
    with pytest.raises(IndexBridgeError, match="too few"):
        IndexBridge.fit_embeddings(np.ones((10, 4)), np.ones((10, 4)))
    with pytest.raises(IndexBridgeError, match="one row per text"):
        IndexBridge.fit_embeddings(np.ones((50, 4)), np.ones((49, 4)))
    with pytest.raises(IndexBridgeError, match=r"old vectors are 8-d but the old encoder x/y is 32-d"):
        IndexBridge.fit_embeddings(
            np.ones((50, 8)), np.ones((50, 4)), old_encoder={"name_or_path": "x/y", "hidden_size": 32}
        )


def test_another_encoder_is_refused_or_refitted(saved, encoders, one_thread):
    with pytest.raises(IndexBridgeError, match=r"is 24-d.*refit=True"):
        IndexBridge.from_pretrained(saved, encoder=encoders["narrow"])
    with pytest.raises(IndexBridgeError, match=r"fitted for .*new but the encoder given is .*other.*refit=True"):
        IndexBridge.from_pretrained(saved, encoder=encoders["other"])
    with pytest.raises(IndexBridgeError, match="own prompt"):  # the old index's queries had their own prompt
        IndexBridge.from_pretrained(saved, encoder=encoders["other"], refit=True)


def test_another_model_under_the_recorded_name_is_refused(bridge, saved, encoders, tmp_path, one_thread):
    """A fine-tuned copy saved under the recorded name passes the name and width checks: the probe catches it."""
    recorded = json.loads((Path(saved) / "bridge_head_config.json").read_text())["index_bridge"]["new_encoder"]
    assert recorded["probe"]["texts"] == 32
    same = shutil.copytree(encoders["new"], tmp_path / "copy" / "new")  # the same weights, another folder
    loaded = IndexBridge.from_pretrained(saved, encoder=str(same))
    again = loaded._probe(model(str(same)).encode(TEXTS[:32], convert_to_numpy=True))  # recomputed from the texts
    assert again["mapped_cosine"] == pytest.approx(recorded["probe"]["mapped_cosine"], abs=1e-5)
    tuned = model(encoders["new"])
    with torch.no_grad():  # a few steps of "fine-tuning": every weight moved by 10 % of its own spread
        for p in tuned.parameters():
            p.add_(0.1 * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    tuned.save(str(tmp_path / "tuned" / "new"))
    with pytest.raises(IndexBridgeError, match=r"not the encoder this bridge was fitted for, though it has its name"):
        IndexBridge.from_pretrained(saved, encoder=str(tmp_path / "tuned" / "new"))
    old_bridge = IndexBridge.from_pretrained(saved)
    old_bridge.new.pop("probe")  # a bridge saved before the check: no record, not checked
    old_bridge._check_encoder(load_text_encoder(str(tmp_path / "tuned" / "new")))


def test_refit_for_another_encoder(encoders, tmp_path, one_thread):
    plain = IndexBridge.fit(encoders["old"], encoders["other"], TEXTS[:150])
    folder = plain.save_pretrained(tmp_path / "plain")
    refitted = IndexBridge.from_pretrained(str(folder), encoder=encoders["narrow"], refit=True)
    assert refitted.new["hidden_size"] == 24 and refitted.encode(QUERIES).shape == (len(QUERIES), 32)


def test_a_classification_head_is_not_an_index_bridge(tmp_path, tokenizer, anchor_texts):
    from hf_bridges import BridgeForSequenceClassification

    head = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    head.save_head(tmp_path / "head")
    with pytest.raises(IndexBridgeError, match="not an index bridge"):
        IndexBridge.from_pretrained(str(tmp_path / "head"))
    with pytest.raises(HeadFormatError, match="not a bridge head"):
        IndexBridge.from_pretrained(str(tmp_path))


def test_an_index_bridge_is_not_a_head_to_attach(saved, encoders):
    from hf_bridges import BridgeModel, HeadAttachError

    with pytest.raises(HeadAttachError, match=r"is an index bridge .*IndexBridge.from_pretrained"):
        BridgeModel.from_encoder(encoders["new"], head=saved)


def test_head_inspect_of_an_index_bridge_checks_its_files_and_names_index_inspect(saved, capsys):
    """`hf-bridges head push` takes a bridge folder (docs/retrieval.md), so a user inspects it as a head too: the files
    are checked and the command that reads the bridge is named (it was a bare "error: 'aggregation'")."""
    assert cli(["head", "inspect", saved]) == 0
    out = capsys.readouterr().out
    assert "index bridge" in out and f"hf-bridges index inspect {saved}" in out
    assert "bridge_head.safetensors" in out and "ok" in out


def test_saving_needs_the_paired_texts(bridge, tmp_path):
    bare = IndexBridge.fit_embeddings(
        bridge.old_vectors, np.asarray(bridge.old_vectors) @ np.ones((32, 8)), estimate=False
    )
    with pytest.raises(IndexBridgeError, match="texts="):
        bare.save_pretrained(tmp_path / "bare")


# ----------------------------------------------------------------------------------------------- real encoders
@pytest.mark.slow
def test_minilm_l6_index_searched_with_l3_queries(one_thread):
    """BBC News known-item search (title -> body, 150 articles; 300 paired paragraphs of other articles): L3
    queries through the bridge keep most of re-embedding's Recall@10 and rank the known item higher than raw L3
    queries do (the two MiniLMs already share much of their space: raw L3 queries find ~80 % in the L6 index)."""
    from huggingface_hub import try_to_load_from_cache

    from hf_bridges.data import load_labelled_dataset

    for name in ("all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"):
        if not isinstance(try_to_load_from_cache(f"sentence-transformers/{name}", "config.json"), str):
            pytest.skip(f"sentence-transformers/{name} is not cached: run `hf-bridges offline-seed`")
    articles = load_labelled_dataset("bbc_news")["test"]["text"]
    split = [[line.strip() for line in a.splitlines() if line.strip()] for a in articles]
    evaluation, rest = split[:150], split[150:]
    paragraphs = [p for lines in rest for p in lines[:3]][:300]
    old = st.SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    new = st.SentenceTransformer("sentence-transformers/paraphrase-MiniLM-L3-v2", device="cpu")
    old.max_seq_length = new.max_seq_length = 96
    bridge = IndexBridge.fit(old, new, paragraphs)
    titles, bodies = [lines[0] for lines in evaluation], [" ".join(lines[1:]) for lines in evaluation]
    index = old.encode(bodies, convert_to_numpy=True)
    through = retrieval_metrics(bridge.encode(titles), index)
    ceiling = retrieval_metrics(new.encode(titles), new.encode(bodies))
    floor = retrieval_metrics(new.encode(titles), index)
    assert through["mrr"] > floor["mrr"] + 0.03, (through, floor)
    assert through["recall@10"] > 0.85 * ceiling["recall@10"], (through, ceiling)
    migrated = retrieval_metrics(new.encode(titles), bridge.migrate(index))  # the index moved, L3 queries
    assert migrated["recall@10"] > 0.85 * ceiling["recall@10"] and migrated["mrr"] > floor["mrr"] + 0.03, migrated
    assert bridge.expected_retention.estimate > 0.5


CANDIDATE_NAMES = {"prior", "rotation", "ridge", "blend 0.25", "blend 0.5", "blend 0.75", "contrastive"}


def test_the_candidate_maps_compete_and_the_best_scored_is_kept(bridge):
    """The rotation of unit vectors, the ridge toward a prior, plain ridge (aecp's map) and blends of the rotation
    with plain ridge compete on both sides at any widths; the best cross-fitted score is kept, ties to the rotation.
    An exact rotation: the rotation is kept (not a blend that ties it) and inverts it. A map no rotation can express
    (strongly anisotropic scaling, then a width change): a ridge, not a blend with the rotation."""
    rng = np.random.default_rng(0)
    old = rng.normal(size=(200, 16))
    old /= np.linalg.norm(old, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    rotated = IndexBridge.fit_embeddings(old, old @ rotation)
    for side in (rotated.query_map, rotated.migrate_map):
        assert side.info["map"].startswith("rotation") and side.unit_input
        assert set(side.info["candidates"]) == CANDIDATE_NAMES
        assert side.info["selection"]["kept"] == "rotation"
    np.testing.assert_allclose(rotated.map_queries(old[:5] @ rotation), old[:5], atol=1e-5)
    skew = rng.normal(size=(16, 12)) * np.geomspace(8.0, 0.05, 12)
    skewed = IndexBridge.fit_embeddings(old, old @ skew)
    info = skewed.migrate_map.info
    # a ridge, or the blend that leans on it: the score's pseudo-relevance (both encoders' cosines) sits between the
    # two geometries and favours a blend even where plain ridge is exact (docs/retrieval.md, The map)
    assert info["selection"]["kept"] in ("prior", "ridge", "blend 0.25"), info
    assert (
        info["candidates"][info["selection"]["kept"]]
        == max(info["candidates"].values())
        > info["candidates"]["rotation"]
    )
    # the fixture's bridge (32-d old, 48-d new): both maps were chosen among the candidates
    for side in (bridge.query_map, bridge.migrate_map):
        assert set(side.info["candidates"]) == CANDIDATE_NAMES
        assert side.info["candidates"][side.info["selection"]["kept"]] == max(side.info["candidates"].values())


def test_plain_ridge_is_scikit_learns_leave_one_out_ridge():
    """``fit_ridge`` (the candidate aecp's ``RidgeMapping`` stands for) is ridge regression with an unshrunk
    intercept and its strength by exact leave-one-out error: the same alpha and map as scikit-learn's ``RidgeCV``
    on the same grid, also with fewer pairs than dimensions (where GCV's approximation picks the interpolating map);
    the alpha is interior on data with noise (not the grid's edge)."""
    from sklearn.linear_model import RidgeCV

    from hf_bridges.retrieval.maps import RIDGE_ALPHAS, fit_ridge

    rng = np.random.default_rng(7)
    for rows, width in ((300, 20), (60, 100)):
        source = rng.normal(size=(rows, width)) * np.geomspace(3.0, 0.1, width)
        target = source @ rng.normal(size=(width, 12)) + 0.5 * rng.normal(size=(rows, 12)) + 2.0
        weight, bias, info = fit_ridge(source, target)
        scale = ((source - source.mean(0)) ** 2).sum() / width
        reference = RidgeCV(alphas=np.array(RIDGE_ALPHAS) * scale, fit_intercept=True).fit(source, target)
        assert reference.alpha_ == pytest.approx(info["alpha"] * scale, rel=1e-9)
        np.testing.assert_allclose(weight, reference.coef_.T, atol=1e-8)
        np.testing.assert_allclose(bias, reference.intercept_, atol=1e-8)
        assert RIDGE_ALPHAS[0] < info["alpha"] < RIDGE_ALPHAS[-1]


def test_the_rotation_reads_directions_and_outputs_the_targets_length(tmp_path):
    """The rotation map L2-normalises its input (a longer vector of an encoder that does not normalise maps to the
    same direction) and scales every output to the target encoder's typical length (1 when it normalises); both
    survive save / load."""
    rng = np.random.default_rng(1)
    old = rng.normal(size=(150, 16)) * rng.uniform(0.5, 3.0, size=(150, 1))  # an encoder that does not normalise
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    new = old @ rotation / np.linalg.norm(old, axis=1, keepdims=True)  # one that does
    bridge = IndexBridge.fit_embeddings(old, new, texts=[f"text {i}" for i in range(150)])
    assert bridge.old["normalize"] is False and bridge.new["normalize"] is True
    assert bridge.migrate_map.unit_input and bridge.query_map.unit_input
    x = old[:7].astype(np.float32)
    np.testing.assert_allclose(bridge.migrate(5 * x), bridge.migrate(x), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(bridge.migrate(x), axis=1), 1.0, atol=1e-5)
    mean_length = np.linalg.norm(old, axis=1).mean()
    np.testing.assert_allclose(np.linalg.norm(bridge.map_queries(new[:7]), axis=1), mean_length, rtol=1e-4)
    loaded = IndexBridge.from_pretrained(str(bridge.save_pretrained(tmp_path / "b")))
    assert loaded.migrate_map.unit_input and loaded.query_map.length == pytest.approx(mean_length, rel=1e-6)
    np.testing.assert_allclose(loaded.migrate(5 * x), bridge.migrate(x), atol=1e-5)
    np.testing.assert_allclose(loaded.map_queries(new[:7]), bridge.map_queries(new[:7]), atol=1e-5)
    assert json.loads((tmp_path / "b" / CONFIG_NAME).read_text())["index_bridge"]["format"] == 2


def test_the_estimate_searches_out_of_fold_texts_of_every_fold():
    """Every paired text is mapped out of fold, so a pseudo-query searches up to 200 texts drawn from all folds
    (at 250 paired texts all 250, not the 50 of its own fold); the estimate is the bridge's hits over
    re-embedding's against both encoders' pseudo-relevance, close at 250 and 2,000 paired texts, and lower when
    each query searches every text (a larger corpus is a harder search)."""
    from hf_bridges.retrieval.estimate import cross_fitted_hits, cross_fitted_retention

    rng = np.random.default_rng(2)
    old = rng.normal(size=(2000, 24))
    new = old @ np.linalg.qr(rng.normal(size=(24, 24)))[0] + 0.6 * rng.normal(size=(2000, 24))
    bridge = IndexBridge.fit_embeddings(old[:250], new[:250])
    est = bridge.expected_retention
    assert est.corpus == 250 and est.reference == "both / reembed" and "each searching 250" in str(est)
    assert est.low <= est.estimate <= est.high

    def fit(s, t):  # query side: source = new vectors, target = the old (stored) ones
        return IndexBridge.fit_embeddings(t, s, estimate=False).map_queries

    hits = cross_fitted_hits(new[:250], old[:250], fit, "query")
    direct = cross_fitted_retention(new[:250], old[:250], fit, "query")
    assert direct.estimate == pytest.approx(hits["both"].mean() / hits["reembed_both"].mean())
    small, large = (cross_fitted_retention(new[:n], old[:n], fit, "query").estimate for n in (250, 2000))
    whole = cross_fitted_retention(new, old, fit, "query", corpus=10**6)
    assert direct.reference == "both / reembed" and direct.estimate > 0.5
    assert whole.corpus == 2000 and abs(large - small) < 0.06 and whole.estimate < large - 0.015, (small, large, whole)


def test_the_selection_score_adds_each_texts_own_pair_reciprocal_rank():
    """``hits_of_mapped``'s "self": a text's reciprocal rank of its own other-encoder vector among its chunk's (1 for
    an exact map, ~1/chunk for a shuffled one, on both sides); the candidates' recorded score is the "both" hits'
    mean plus that mean, the kept map the best of them."""
    from hf_bridges.retrieval.estimate import cross_fitted_mapped, hits_of_mapped
    from hf_bridges.retrieval.maps import LinearMap

    rng = np.random.default_rng(4)
    old = rng.normal(size=(400, 16))
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    new = old @ rotation
    for side, (source, target) in (("query", (new, old)), ("migrate", (old, new))):  # the exact map gives target
        assert hits_of_mapped(target, source, target, side)["self"].tolist() == [1.0] * 400
        shuffled = hits_of_mapped(target[rng.permutation(400)], source, target, side)["self"]
        assert shuffled.mean() < 0.05, shuffled.mean()
    noisy = (old + 0.8 * rng.normal(size=old.shape)) @ rotation
    info = IndexBridge.fit_embeddings(old, noisy).query_map.info
    assert info["selection"]["score"] == "both@10 + self-MRR"
    assert info["candidates"][info["selection"]["kept"]] == max(info["candidates"].values())
    # the rotation's recorded score, recomputed from its own out-of-fold vectors (query side: new -> old)
    mapped = cross_fitted_mapped(noisy, old, lambda s, t: LinearMap.fit(s, t, False, "rotation"))
    hits = hits_of_mapped(mapped / np.linalg.norm(mapped, axis=1, keepdims=True), noisy, old, "query")
    assert info["candidates"]["rotation"] == pytest.approx(hits["both"].mean() + hits["self"].mean(), abs=1e-4)
    assert hits["self"].mean() < 1.0  # the noisy pairs: the self term is not a constant that leaves the choice as is


def test_a_format_1_bridge_loads_as_it_was_saved_and_a_newer_one_is_refused(tmp_path):
    """A bridge saved before maps recorded ``unit_input`` / ``length`` (format 1) applies ``x @ W + b``, normalised
    as recorded; a format newer than this hf_bridges reads is an error naming the upgrade."""
    rng = np.random.default_rng(3)
    old = rng.normal(size=(120, 12)) * rng.uniform(0.5, 3.0, size=(120, 1))
    new = old @ rng.normal(size=(12, 12))
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    bridge = IndexBridge.fit_embeddings(old, new, texts=[f"t{i}" for i in range(120)], translation="ridge")
    folder = bridge.save_pretrained(tmp_path / "b")
    config_path = Path(folder, CONFIG_NAME)
    config = json.loads(config_path.read_text())
    record = config["index_bridge"]
    record["format"] = 1
    for name in ("query_map", "migrate_map"):
        record[name].pop("unit_input"), record[name].pop("length")
    config_path.write_text(json.dumps(config))
    loaded = IndexBridge.from_pretrained(str(folder))
    assert not loaded.migrate_map.unit_input and loaded.migrate_map.length == 1.0
    x = (3 * old[:5]).astype(np.float32)
    plain = x @ loaded.migrate_map.weight + loaded.migrate_map.bias
    np.testing.assert_allclose(loaded.migrate(x), plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-5)
    record["format"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(IndexBridgeError, match=r"format 4, newer than this hf_bridges reads \(3\)"):
        IndexBridge.from_pretrained(str(folder))


def shared_latent_pairs(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Callable]:
    """Two 32-d encoders of one 48-d latent through different, partly shared projections (neither a rotation nor a
    linear function of the other), and the latent -> (old, new) encoding for evaluation items."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(48, 32))
    b = 0.4 * a @ np.linalg.qr(rng.normal(size=(32, 32)))[0] + 0.6 * rng.normal(size=(48, 32))

    def encode(z):
        return tuple(x / np.linalg.norm(x, axis=1, keepdims=True) for x in (z @ a, z @ b))

    return *encode(rng.normal(size=(rows, 48))), encode


def test_a_blend_is_kept_where_it_retrieves_better_and_not_where_it_does_not():
    """Encoders that share part of a latent: the rotation keeps the old encoder's geometry, plain ridge imitates the
    new one from 250 noisy pairs; the migrate side keeps a blend of the two, its cross-fitted score above every
    single map's, and on a labelled known-item task (2,000 latent documents in the old index, new-encoder queries
    of noisy copies) the migrated index finds more relevant documents than with any single map (0.731 vs 0.720 for
    the best, 0.635 for the rotation). Encoders one noisy rotation apart (100 pairs, 64-d): the rotation is kept,
    and no blend retrieves better than it there (0.973 vs 0.964-0.973; plain ridge 0.945)."""
    from hf_bridges.retrieval.maps import BlendedMap, fit_candidate

    old, new, encode = shared_latent_pairs(250)
    info = IndexBridge.fit_embeddings(old, new).migrate_map.info
    kept = info["selection"]["kept"]
    assert kept.startswith("blend ") and info["map"].startswith("blend"), info
    singles = ("rotation", "prior", "ridge")
    assert info["candidates"][kept] > max(info["candidates"][c] for c in singles)
    rng = np.random.default_rng(100)
    docs = rng.normal(size=(2000, 48))
    d_old, _ = encode(docs)
    _, q_new = encode(docs + rng.normal(size=docs.shape))
    recall = {
        c: retrieval_metrics(q_new, fit_candidate(old, new, True, c)(d_old))["recall@10"] for c in (*singles, kept)
    }
    assert isinstance(fit_candidate(old, new, True, kept), BlendedMap)
    assert recall[kept] > max(recall[c] for c in singles) + 0.005, recall

    rng = np.random.default_rng(1)
    rotation = np.linalg.qr(rng.normal(size=(64, 64)))[0]

    def encode_rotated(z):
        noisy = (z + 0.5 * rng.normal(size=z.shape), z @ rotation + 0.5 * rng.normal(size=z.shape))
        return tuple(x / np.linalg.norm(x, axis=1, keepdims=True) for x in noisy)

    old, new = encode_rotated(rng.normal(size=(100, 64)))
    assert IndexBridge.fit_embeddings(old, new).migrate_map.info["selection"]["kept"] == "rotation"
    docs = rng.normal(size=(2000, 64))
    d_old, _ = encode_rotated(docs)
    _, q_new = encode_rotated(docs + rng.normal(size=docs.shape))
    recall = {
        c: retrieval_metrics(q_new, fit_candidate(old, new, True, c)(d_old))["recall@10"] for c in CANDIDATE_NAMES
    }
    assert recall["rotation"] >= max(v for c, v in recall.items() if c.startswith("blend")) > recall["ridge"], recall


def test_a_blended_map_round_trips_and_is_saved_as_format_3(tmp_path):
    """A blend (two members, each with its own input normalisation) is saved per member and loads to the same
    vectors, on an encoder that does not normalise (the output keeps the target's mean length); a bridge with no
    blend is still written as format 2, which an older hf_bridges reads."""
    from hf_bridges.retrieval.maps import BlendedMap, fit_candidate

    old, new, _ = shared_latent_pairs(250)
    scale = np.random.default_rng(4).uniform(0.5, 3.0, size=(250, 1))
    bridge = IndexBridge.fit_embeddings(old * scale, new, texts=[f"t{i}" for i in range(250)], estimate=False)
    bridge.migrate_map = fit_candidate(old * scale, new, True, "blend 0.25")
    bridge.query_map = fit_candidate(new, old * scale, False, "blend 0.5")
    folder = bridge.save_pretrained(tmp_path / "blend")
    assert json.loads(Path(folder, CONFIG_NAME).read_text())["index_bridge"]["format"] == 3
    loaded = IndexBridge.from_pretrained(str(folder))
    for side in ("query_map", "migrate_map"):
        saved, back = getattr(bridge, side), getattr(loaded, side)
        assert isinstance(back, BlendedMap) and back.weights == saved.weights and back.length == saved.length
        assert [m.unit_input for m in back.members] == [True, False]  # the rotation reads directions, ridge raw
    x, q = (old[:9] * scale[:9]).astype(np.float32), new[:9].astype(np.float32)
    np.testing.assert_allclose(loaded.migrate(x), bridge.migrate(x), atol=1e-6)
    np.testing.assert_allclose(loaded.map_queries(q), bridge.map_queries(q), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(loaded.migrate(x), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(loaded.map_queries(q), axis=1), bridge.query_map.length, rtol=1e-5)
    assert loaded.migrate(x).dtype == np.float32
    plain = IndexBridge.fit_embeddings(old, new, texts=[f"t{i}" for i in range(250)], estimate=False)
    assert (
        json.loads(Path(plain.save_pretrained(tmp_path / "p"), CONFIG_NAME).read_text())["index_bridge"]["format"] == 2
    )
