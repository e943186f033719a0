"""The ``hf-bridges`` command line as a user meets it (round 11): each probe that went wrong, through ``main``."""

from __future__ import annotations

import pytest
from helpers import make_encoder
from hub_server import TOKEN, hub_fixture

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.cli import main
from hf_bridges.heads.format import HEAD_FILES

hub = pytest.fixture(hub_fixture)


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, tokenizer, anchor_texts):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}
    )
    return model.save_head(tmp_path_factory.mktemp("review") / "head")


def _error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"hf-bridges {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("module", ["hf_bridges.cli", "hf_bridges.training"])
def test_train_overrides_after_resume_are_applied(tmp_path, capsys, module):
    """``train CONFIG --resume latest output_dir=X`` was "unrecognized arguments: output_dir=X" (exit 2)."""
    out = tmp_path / "run"
    if module == "hf_bridges.cli":
        assert main(["train", "train-tiny", "--resume", "latest", f"output_dir={out}", "max_steps=2"]) == 1
        line = _error_line(capsys, "train")
    else:
        from hf_bridges.training.run import main as training_main

        assert training_main(["train-tiny", "--resume", "latest", f"output_dir={out}", "max_steps=2"]) == 1
        line = capsys.readouterr().err
    assert f"no complete checkpoint under {out / 'checkpoints'}" in line  # the override reached the run


def test_a_stray_argument_is_still_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "train-tiny", "--resume", "latest", "stray"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err


SMALL_STITCH = {
    "dataset": {"name": "bbc_news", "max_train": 60, "max_test": 30},
    "encoders": [{"id": "sentence-transformers/paraphrase-MiniLM-L3-v2", "name": "L3"}],
    "anchors": {"num_anchors": 10},
    "seeds": [0],
    "methods": [{"name": "cosine", "projections": ["cosine"]}],
}


def _stitch_yaml(tmp_path, **changes) -> str:
    import copy

    import yaml

    config = copy.deepcopy(SMALL_STITCH)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            config.setdefault(section, {})[name] = value
        else:
            config[section] = value
    path = tmp_path / "stitch.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--epochs", "0"), ("--epochs", "-2"), ("--max-train", "0"), ("--anchors", "0"), ("--alignment", "-3")],
)
def test_stitch_quick_run_flags_out_of_range_are_usage_errors(tmp_path, capsys, flag, value):
    """``--epochs 0`` / ``--max-train 0`` / ``--anchors 0`` were skipped as falsy (the config's value ran, exit 0);
    ``--epochs -2`` trained no epoch and reported the untrained heads; ``--alignment -3`` was taken."""
    argv = ["stitch", _stitch_yaml(tmp_path), "--output-dir", str(tmp_path / "out"), flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--cache-dir", str(tmp_path / "cache")])
    assert exit_info.value.code == 2
    assert f"argument {flag}: must be >=" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("latent__k", 0, "latent.k must be >= 1"),  # was a NaN Jaccard@k column, exit 0
        ("seeds", [-1], "seeds (--seeds) must be a non-empty list of whole numbers from 0"),  # numpy's message
        ("dataset__max_test", -1, "dataset.max_test must be >= 1"),  # sklearn's "train_size=-1 should be ..."
        ("dataset__max_train", 0, "dataset.max_train must be >= 1"),
        ("anchors__num_anchors", 1, "anchors.num_anchors must be >= 2"),  # "need at least 2 anchors": no field
    ],
)
def test_stitch_config_counts_out_of_range_name_the_key(tmp_path, capsys, key, value, expected):
    argv = ["stitch", _stitch_yaml(tmp_path, **{key: value}), "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    assert expected in _error_line(capsys, "stitch")
    assert not (tmp_path / "cache").exists()  # refused before any embedding


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"data_files": "DATA", "test_sise": 0.3}, "unknown option 'test_sise' (did you mean 'test_size'?)"),
        ({"test_size": 0.3}, "dataset 'files' needs the option(s) data_files"),
    ],
)
def test_stitch_dataset_options_the_loader_does_not_take_are_named(tmp_path, capsys, options, expected):
    """A typo in ``dataset.options`` (or a CSV without ``data_files``) was the loader's ``TypeError`` traceback."""
    data = tmp_path / "news.csv"
    data.write_text("text,label\n" + "".join(f"market text {i},{i % 2}\n" for i in range(20)))
    options = {k: str(data) if v == "DATA" else v for k, v in options.items()}
    dataset = {"name": "files", "options": options}
    argv = ["stitch", _stitch_yaml(tmp_path, dataset=dataset), "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    assert expected in _error_line(capsys, "stitch")


def test_train_dataset_kwargs_typo_is_named(capsys):
    assert main(["train", "train-tiny", "dataset_kwargs.test_sise=0.3"]) == 1
    assert "dataset 'bbc_news': unknown option 'test_sise' (did you mean 'test_size'?)" in _error_line(capsys, "train")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # kept as an extra attribute: the run trained the default width and exited 0
        ("encoder_config.hiden_size=16", "BertConfig has no key 'hiden_size' (did you mean 'hidden_size'?)"),
        # transformers' StrictDataclassFieldValidationError traceback
        ("encoder_config.hidden_size=abc", "encoder_config: Validation error for field 'hidden_size'"),
        ("encoder_config.model_type=bertt", "unknown model type 'bertt' (did you mean 'bert'?)"),
        ("max_train_samples=0", "max_train_samples must be >= 1"),  # datasets' "Column name [...] not in the dataset"
        ("max_eval_samples=-1", "max_eval_samples must be >= 1"),
        ("warmup_ratio=5", "warmup_ratio is the fraction of the steps"),  # trained, exit 0
        ("lora.r=abc", "lora.r must be a whole number >= 1, got 'abc'"),  # peft's TypeError traceback
        ("seed=-1", "seed must be from 0 to 4294967295"),  # numpy's "Seed must be between 0 and 2**32 - 1"
        ("anchor_seed=-1", "anchor_seed must be from 0"),  # numpy's "expected non-negative integer"
        ("max_seq_length=0", "max_seq_length must be >= 1"),  # fell back to 128, clamped to 8; exit 0
        ("checkpoint_every=-1", "checkpoint_every must be >= 0"),  # a checkpoint every step; exit 0
        ("tokenizer_vocab_size=0", "tokenizer_vocab_size must be >= 6"),  # a 6-token vocabulary; exit 0
    ],
)
def test_train_config_values_are_checked_before_the_run(tmp_path, capsys, override, expected):
    extra = ["lora.target_modules=query"] if override.startswith("lora.") else []
    assert main(["train", "train-tiny", override, *extra, f"output_dir={tmp_path / 'run'}", "max_steps=2"]) == 1
    assert expected in _error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag", ["--encoder", "--tokenizer"])
def test_a_missing_encoder_or_tokenizer_folder_is_named_as_a_path(tmp_path, capsys, head_dir, tiny_encoder_dir, flag):
    """A path that does not exist was "Repo id must be in the form 'repo_name' or 'namespace/repo_name'", with
    "Offline? Put it in the Hugging Face cache ... or pass a local folder" (one was passed)."""
    missing = str(tmp_path / "no-such-encoder")
    argv = ["head", "attach", str(head_dir), "--encoder", missing if flag == "--encoder" else tiny_encoder_dir]
    if flag == "--tokenizer":
        argv += ["--tokenizer", missing]
    assert main(argv) == 1
    line = _error_line(capsys, "head")
    assert f"{missing!r}: there is no folder at that path" in line and "Repo id must be" not in line


def test_head_pull_output_into_a_model_folder_keeps_its_card(hub, head_dir, tmp_path, capsys):
    """``head pull --output`` copied README.md over a model folder's own card (save_head writes
    bridge_head_card.md there), file by file with no staging; an --output that is a file failed after the download
    with "[Errno 17] File exists"."""
    assert main(["head", "push", str(head_dir), "alice/review-head", "--token", TOKEN, "--endpoint", hub.endpoint]) == 0
    shared = tmp_path / "model"
    shared.mkdir()
    (shared / "config.json").write_text("{}")
    (shared / "README.md").write_text("my model's own card\n")
    assert main(["head", "pull", "alice/review-head", "--output", str(shared), "--endpoint", hub.endpoint]) == 0
    assert (shared / "README.md").read_text() == "my model's own card\n"
    assert 'head="alice/review-head"' in (shared / "bridge_head_card.md").read_text()
    assert all((shared / name).read_bytes() == (head_dir / name).read_bytes() for name in HEAD_FILES)
    assert main(["head", "inspect", str(shared)]) == 0
    capsys.readouterr()

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for argv in (["head", "pull", "alice/review-head"], ["head", "attach", str(head_dir), "--encoder", "unused"]):
        assert main([*argv, "--output", str(a_file), "--endpoint", hub.endpoint]) == 1
        assert f"--output {a_file} is a file, not a folder" in _error_line(capsys, "head")


def _parsers(parser, path=("hf-bridges",)):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{' '.join(path)} {name}: no help line"
                yield from _parsers(sub, (*path, name))


def test_every_argument_of_every_subcommand_says_what_it_is():
    """``head push FOLDER REPO_ID`` and the other positionals had no help, ``index fit --seed`` / ``migrate
    --batch-size`` neither; ``head``'s line named 4 of its 6 actions; push's --revision read "branch, tag or commit
    sha of the head repo" (a push goes to a branch, created when missing); the top line showed reST backticks."""
    import argparse

    from hf_bridges.cli import build_parser

    missing = []
    for path, parser in _parsers(build_parser()):
        assert "``" not in (parser.description or ""), path
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    head = next(parser for path, parser in _parsers(build_parser()) if path == ("hf-bridges", "head"))
    actions = next(a for a in head._actions if isinstance(a, argparse._SubParsersAction))
    root = build_parser()
    head_line = next(
        c.help
        for a in root._actions
        if isinstance(a, argparse._SubParsersAction)
        for c in a._choices_actions
        if c.dest == "head"
    )
    assert all(name in head_line for name in actions.choices), head_line
    push = actions.choices["push"]
    assert "branch to push to" in next(a.help for a in push._actions if a.dest == "revision")


@pytest.mark.parametrize("command", ["stitch", "train"])
def test_a_binary_config_file_is_named(tmp_path, capsys, command):
    """A non-UTF-8 file as CONFIG was "'utf-8' codec can't decode byte ..." naming no file."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xe7\x00\xff binary")
    extra = ["--output-dir", str(tmp_path / "out")] if command == "stitch" else []
    assert main([command, str(path), *extra]) == 1
    assert f"{path}: not valid YAML" in _error_line(capsys, command)


def test_training_progress_is_one_bar_not_a_bar_per_anchor_refresh(tmp_path, capsys):
    """With the encoder training, every anchor refresh (each step under anchor_refresh auto) printed its own
    "embedding 32 anchors" bar into the step bar: 21 bars for 20 steps in a log file."""
    argv = ["train", "train-tiny", "anchor_refresh=auto", "max_steps=6", "max_eval_samples=32"]
    assert main([*argv, f"output_dir={tmp_path / 'run'}"]) == 0
    err = capsys.readouterr().err
    assert "6/6" in err  # the step bar is still there
    assert err.count("embedding 32 anchors") <= 4, err  # one bar before the loop (0% and 100%), at most one more


def test_a_cache_dir_that_is_a_file_is_named_with_the_flag(tmp_path, capsys):
    """``--cache-dir FILE`` was "[Errno 20] Not a directory: 'FILE/sentence-transformers_...'" from inside the
    embedding step, naming no flag."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    argv = ["stitch", _stitch_yaml(tmp_path), "--output-dir", str(tmp_path / "out"), "--cache-dir", str(a_file)]
    assert main(argv) == 1
    line = _error_line(capsys, "stitch")
    assert f"embedding cache {a_file} is not writable" in line and "pass another --cache-dir" in line


def test_stitch_private_without_a_push_is_refused(tmp_path, capsys):
    """``--private`` alone wrote a best head into the output folder and pushed nothing (exit 0)."""
    argv = ["stitch", _stitch_yaml(tmp_path), "--output-dir", str(tmp_path / "out"), "--private"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    assert "--private makes the pushed repo private, but this run pushes nothing" in _error_line(capsys, "stitch")
    assert not (tmp_path / "cache").exists()


def test_head_inspect_encoder_on_a_head_without_classifier_says_so(tmp_path, capsys, tokenizer, anchor_texts):
    """``head inspect HEAD --encoder ENC`` on a representation head printed nothing for the encoder."""
    from hf_bridges import BridgeModel

    head = BridgeModel.from_encoder(make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer).save_head(
        tmp_path / "head"
    )
    assert main(["head", "inspect", str(head), "--encoder", "some/encoder"]) == 0
    assert "on some/encoder: no expected accuracy, the head has no classifier" in capsys.readouterr().out


@pytest.mark.subprocess
def test_ctrl_c_is_one_line_and_exit_status_130(tmp_path):
    """Ctrl-C printed Python's KeyboardInterrupt traceback from whatever frame it hit (exit -2 / 130 by the
    signal). The process is stopped while it waits on a Hub that accepted the connection and never answers."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    hub = socket.create_server(("127.0.0.1", 0))
    hub.settimeout(120)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.getsockname()[1]}",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_ETAG_TIMEOUT": "120",
        "HF_HUB_DOWNLOAD_TIMEOUT": "120",
    }
    env.pop("HF_HUB_CACHE", None)
    command = [sys.executable, "-m", "hf_bridges.cli", "head", "pull", "alice/never-answers"]
    # A background job (CI started with `&`, nohup) inherits SIGINT ignored, and Python then installs no Ctrl-C
    # handler: give the child the default disposition a terminal's foreground process has.
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        connection, _ = hub.accept()  # the pull is inside main(), waiting for the Hub's answer
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
        hub.close()
    connection.close()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "hf-bridges head: interrupted"


def test_a_cached_encoder_at_an_uncached_revision_names_the_revision(tmp_path, capsys, monkeypatch):
    """``revision: nope`` on a cached encoder said "is not in the cache ... (did you mean '<the same id>'?)"."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    encoders = [{**SMALL_STITCH["encoders"][0], "revision": "nope"}]
    argv = ["stitch", _stitch_yaml(tmp_path, encoders=encoders), "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    line = _error_line(capsys, "stitch")
    assert "is in the Hugging Face cache, but not at revision 'nope'" in line and "'main'" in line
    assert "did you mean" not in line


def test_head_push_private_onto_an_existing_public_repo_pushes_nothing(hub, head_dir, capsys):
    """``create_repo(private=True, exist_ok=True)`` leaves an existing repo's visibility as it is: ``head push
    --private`` onto a public repo published the head publicly, and said only "pushed"."""
    from huggingface_hub import HfApi

    base = ["--token", TOKEN, "--endpoint", hub.endpoint]
    assert main(["head", "push", str(head_dir), "alice/public-head", *base]) == 0
    before = HfApi(endpoint=hub.endpoint, token=TOKEN).repo_info("alice/public-head").sha
    capsys.readouterr()
    assert main(["head", "push", str(head_dir), "alice/public-head", "--private", "--message", "again", *base]) == 1
    assert "alice/public-head already exists and is public" in _error_line(capsys, "head")
    assert HfApi(endpoint=hub.endpoint, token=TOKEN).repo_info("alice/public-head").sha == before  # no new commit
    assert main(["head", "push", str(head_dir), "alice/private-head", "--private", *base]) == 0  # a new repo: fine
    assert HfApi(endpoint=hub.endpoint, token=TOKEN).repo_info("alice/private-head").private


@pytest.mark.parametrize("token", [None, "hf_wrong_token"])
def test_head_push_without_a_valid_token_says_how_to_log_in(hub, head_dir, capsys, token):
    """No token (or a wrong one): the HTTP client's "Client error '401 Unauthorized' for url '.../api/repos/create'
    For more information check: https://developer.mozilla.org/..." over three lines."""
    argv = ["head", "push", str(head_dir), "alice/no-token", "--endpoint", hub.endpoint]
    assert main([*argv, *(["--token", token] if token else [])]) == 1
    line = _error_line(capsys, "head")
    assert "did not accept the token for pushing to alice/no-token" in line and "hf auth login" in line


def test_head_search_limit_and_a_folder_encoder(hub, tiny_encoder_dir, capsys):
    """``--limit 0`` printed "no published heads" (exit 0) and ``--limit -1`` islice's message; ``--encoder
    FOLDER`` printed "no published heads for FOLDER" (heads are tagged by Hub id)."""
    for limit in ("0", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            main(["head", "search", "--limit", limit, "--endpoint", hub.endpoint])
        assert exit_info.value.code == 2
        assert "argument --limit: must be >= 1" in capsys.readouterr().err
    assert main(["head", "search", "--encoder", tiny_encoder_dir, "--endpoint", hub.endpoint]) == 1
    assert "is a folder; heads are found by the Hub id" in _error_line(capsys, "head")


@pytest.mark.parametrize("override", ["learning_rate=-1", "encoder_learning_rate=0", "weight_decay=-0.1"])
def test_train_optimiser_values_out_of_range_are_refused(tmp_path, capsys, override):
    """``learning_rate=-1`` trained 2 steps of gradient ascent and exited 0 (AdamW checks only its default lr, the
    loop passes the rates per parameter group)."""
    assert main(["train", "train-tiny", override, f"output_dir={tmp_path / 'run'}", "max_steps=2"]) == 1
    assert f"{override.split('=')[0]} must be" in _error_line(capsys, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("training", [{"learning_rate": -1}, {"weight_decay": -1}])
def test_stitch_optimiser_values_out_of_range_fail_before_embedding(tmp_path, capsys, training):
    argv = ["stitch", _stitch_yaml(tmp_path, training=training), "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    assert "training.learning_rate must be > 0 and training.weight_decay >= 0" in _error_line(capsys, "stitch")
    assert not (tmp_path / "cache").exists()


def test_train_on_a_csv_without_a_text_column_names_the_option(tmp_path, capsys):
    """ "column 'text' not in news.csv; columns: ['body', 'topic']" did not say which option names the column."""
    data = tmp_path / "news.csv"
    data.write_text("body,topic\n" + "".join(f"market text {i},{i % 2}\n" for i in range(20)))
    assert main(["train", "train-tiny", "dataset=files", f"dataset_kwargs.data_files={data}"]) == 1
    line = _error_line(capsys, "train")
    assert "text_column 'text' is not a column of" in line and "dataset_kwargs.text_column=" in line


def test_head_recover_of_a_file_is_an_error(tmp_path, capsys):
    a_file = tmp_path / "bridge_head_config.json"
    a_file.write_text("{}")
    assert main(["head", "recover", str(a_file)]) == 1  # was "nothing to recover in FILE", exit 0
    assert "is a file; pass the folder whose save was interrupted" in _error_line(capsys, "head")


def test_an_override_without_equals_is_a_usage_error(capsys):
    """``train train-tiny output_dir`` was a run-time error (exit 1) after the preset was read."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "train-tiny", "output_dir"])
    assert exit_info.value.code == 2
    assert "argument key=value: 'output_dir' is not key=value" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "key"), [("--max-train", "dataset.max_train"), ("--max-test", "dataset.max_test")])
def test_a_subset_smaller_than_the_classes_names_its_flag(tmp_path, capsys, flag, key):
    """``--max-test 2`` on 5 classes was sklearn's "The train_size = 2 should be greater or equal to the number of
    classes = 5" (train_size, for the test subset)."""
    argv = ["stitch", _stitch_yaml(tmp_path), "--output-dir", str(tmp_path / "out"), flag, "2"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    assert f"{key} ({flag}) = 2 is below the 5 classes" in _error_line(capsys, "stitch")


def test_head_attach_json_with_output_prints_only_json(tmp_path, capsys, head_dir, tiny_encoder_dir):
    """``--json --output DIR`` followed the JSON with "saved the stitched model to DIR" on stdout (not parseable)."""
    import json

    argv = ["head", "attach", str(head_dir), "--encoder", tiny_encoder_dir, "--json", "--output", str(tmp_path / "m")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["num_anchors"] > 0
    assert "saved the stitched model to" in captured.err


def test_head_attach_offers_gate_for_the_default_head(tmp_path, capsys, head_dir, tiny_encoder_dir):
    """The choices were none/auto/hard/soft: hard and soft fail on the default (aligned) head, whose error then
    named 'gate', which the command refused as an invalid choice (exit 2)."""
    import json

    argv = ["head", "attach", str(head_dir), "--encoder", tiny_encoder_dir, "--subspace-selection", "gate", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["alignment"] is not None


@pytest.mark.parametrize(
    "override, expected",
    [
        ("log_with=[json, wandb]", "log_with names 'wandb', which is not installed here: pip install wandb"),
        ("log_with=[json, tensorboard]", "'tensorboard', which is not installed here: pip install tensorboard"),
        ("log_with=[jsn]", "log_with: unknown tracker 'jsn' (did you mean 'json'?)"),
    ],
)
def test_train_a_tracker_that_is_not_installed_is_refused_before_the_run(tmp_path, capsys, override, expected):
    """``log_with: [wandb]`` without wandb trained with a warning and logged nowhere (tensorboard: silently): the
    user found the missing logs after the run. Neither tracker is installed in the test environment."""
    assert main(["train", "train-tiny", override, f"output_dir={tmp_path / 'run'}", "max_steps=2"]) == 1
    assert expected in _error_line(capsys, "train")
    assert not (tmp_path / "run").exists()
