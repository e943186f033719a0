"""The stitching config schema: every bad config fails early with a message that names the key and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from stitch_helpers import save_tiny_encoder, tiny_config, write_topic_csv

from hf_bridges.stitching import ConfigError, load_config, parse_config
from hf_bridges.stitching.runner import prepare

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("stitch-config")
    enc = save_tiny_encoder(root / "enc", seed=0, hidden_size=32)
    return tiny_config([enc], write_topic_csv(root / "topics.csv")), root


def test_shipped_configs_parse():
    for path in sorted((REPO / "configs").glob("stitch-bbc*.yaml")):
        config = load_config(path)
        assert config.encoders and config.methods, path


def test_default_config_is_the_two_minilms_on_bbc():
    config = load_config(REPO / "configs" / "stitch-bbc.yaml")
    assert [e.id for e in config.encoders] == [
        "sentence-transformers/all-MiniLM-L6-v2",
        "sentence-transformers/paraphrase-MiniLM-L3-v2",
    ]
    assert config.dataset.name == "bbc_news" and len(config.seeds) >= 2
    assert any(m.select is not None for m in config.methods)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.update(encoder=c.pop("encoders")), "did you mean 'encoders'"),
        (lambda c: c["methods"][1].update(projections=["cosin"]), "did you mean 'cosine'"),
        (lambda c: c["methods"][2].update(aggregation="mlpsum"), "did you mean 'mlp_sum'"),
        (lambda c: c["encoders"][0].update(pooling="meen"), "did you mean 'mean'"),
        (lambda c: c["encoders"][0].update(kind="hf_txt"), "did you mean 'hf_text'"),
        (lambda c: c["anchors"].update(strategy="kmean"), "did you mean 'kmeans'"),
        (lambda c: c["anchors"].update(num_anchor=3), "did you mean 'num_anchors'"),
        (lambda c: c["anchors"].update(alignment=-1), r"anchors.alignment must be >= 0"),
        (lambda c: c["anchors"].update(alignment="1000"), r"anchors.alignment must be a whole number"),
        (lambda c: c["methods"][2]["select"].update(mode="fuzzy"), "select.mode"),
        (lambda c: c["methods"][1].update(subspace_dropout=1.5), "subspace_dropout"),
        (lambda c: c["methods"].append({"name": "cosine"}), "method names must be unique"),
        (lambda c: c.update(seeds=[]), "seeds"),
        (lambda c: c.update(methods=[]), "'methods' is required"),
    ],
)
def test_schema_errors(world, mutate, message):
    config = copy.deepcopy(world[0])
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


def test_unknown_encoder_not_in_offline_cache(world, tmp_path):
    config = copy.deepcopy(world[0])
    config["encoders"][0]["id"] = "sentence-transformers/no-such-encoder"
    with pytest.raises(ConfigError, match="not in the Hugging Face cache.*offline-seed"):
        prepare(parse_config(config), tmp_path / "out")


def test_world_errors_come_before_any_embedding(world, tmp_path):
    base, _root = world
    bad_label = copy.deepcopy(base)
    bad_label["dataset"]["label_column"] = "category"
    with pytest.raises(ValueError, match="column 'category'"):
        prepare(parse_config(bad_label), tmp_path / "out")
    too_many = copy.deepcopy(base)
    too_many["anchors"]["num_anchors"] = 10_000
    with pytest.raises(
        ConfigError, match=r"anchors.num_anchors \+ anchors.alignment = 10000 \+ 0 but the train split has only 60"
    ) as error:
        prepare(parse_config(too_many), tmp_path / "out")
    assert "max_train" not in str(error.value)  # the whole split is in use: raising max_train cannot help
    too_many["anchors"].update(num_anchors=20, alignment=50)  # each fits, together they do not
    with pytest.raises(ConfigError, match=r"= 20 \+ 50 but the train split has only 60"):
        prepare(parse_config(too_many), tmp_path / "out")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="not writable"):
        prepare(parse_config(copy.deepcopy(base)), blocker / "out")
    unknown_dataset = copy.deepcopy(base)
    unknown_dataset["dataset"] = {"name": "bbc_new"}
    with pytest.raises(ConfigError, match="did you mean 'bbc_news'"):
        prepare(parse_config(unknown_dataset), tmp_path / "out")


def test_cli_reports_config_errors(tmp_path, capsys):
    from hf_bridges.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("encoders: [{id: x}]\nmethods: [{name: m, projections: [cosin]}]\n")
    assert main(["stitch", str(bad), "--output-dir", str(tmp_path / "out")]) == 1
    assert "did you mean 'cosine'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_old_spellings_are_read_with_a_future_warning(world):
    from hf_bridges.stitching.config import parse_config

    old = copy.deepcopy(world[0])
    old["encoders"][0]["max_length"] = old["encoders"][0].pop("max_seq_length")
    old["anchors"]["num"] = old["anchors"].pop("num_anchors")
    old["training"]["epochs"] = old["training"].pop("num_epochs")
    with pytest.warns(FutureWarning) as caught:
        config = parse_config(old)
    messages = " ".join(str(w.message) for w in caught)
    for new in ("max_seq_length", "num_anchors", "num_epochs"):
        assert f"write {new!r}" in messages
    assert config.anchors.num_anchors == 12 and config.training.num_epochs == 3
    assert config.encoders[0].max_seq_length == 16 and config.encoders[0].max_length == 16  # alias kept


def test_methods_are_checked_as_head_configs(world):
    from hf_bridges.stitching.config import parse_config

    bad = copy.deepcopy(world[0])
    bad["methods"][1]["projections"] = "cosine"
    with pytest.raises(ConfigError, match=r"projections: expected a list.*\['cosine'\]"):
        parse_config(bad)
    bad = copy.deepcopy(world[0])
    bad["head"] = {"classifier_hidden_size": 10**7}
    with pytest.raises(ConfigError, match="head.classifier_hidden_size: 10000000 is out of range"):
        parse_config(bad)
    config = parse_config(copy.deepcopy(world[0]))
    assert config.methods[1].head_config(config.head).projections == config.methods[1].projections
