"""TrainConfig: YAML presets, key=value overrides with type coercion, clear errors for bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_bridges.cli import main as cli_main
from hf_bridges.training.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["train-tiny.yaml", "train-bbc.yaml", "train-bbc-lora.yaml"])
def test_presets_load(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.dataset == "bbc_news"
    assert (cfg.encoder is None) != (cfg.encoder_config is None)


def test_overrides_are_coerced_to_field_types():
    cfg = load_config(
        CONFIGS / "train-tiny.yaml",
        [
            "learning_rate=1",
            "batch_size=8",
            "freeze_encoder=true",
            "output_dir=007",
            "head.projections=cosine,l1",
            "max_steps=null",
            "encoder_config.hidden_size=16",
            "lora.target_modules=[query]",
            "lora.r=2",
        ],
    )
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.batch_size == 8 and cfg.freeze_encoder is True
    assert cfg.output_dir == "007"  # strings stay verbatim, not the number 7
    assert cfg.head.projections == ["cosine", "l1"] and cfg.projections == ["cosine", "l1"]
    assert cfg.max_steps is None
    assert cfg.encoder_config["hidden_size"] == 16 and cfg.encoder_config["model_type"] == "bert"
    assert cfg.lora == {"target_modules": ["query"], "r": 2}


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ValueError, match=r"unknown config key 'learning_rat'.*did you mean 'learning_rate'"):
        load_config(CONFIGS / "train-tiny.yaml", ["learning_rat=0.1"])
    with pytest.raises(ValueError, match=r"unknown lora key 'rank'.*valid keys"):
        load_config(CONFIGS / "train-tiny.yaml", ["lora.rank=4"])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("encoder: x\nnum_anchor: 10\n")
    with pytest.raises(ValueError, match=r"'num_anchor'.*did you mean 'num_anchors'"):
        load_config(path)


def test_bad_values_are_errors():
    with pytest.raises(ValueError, match=r"batch_size='eight': expected int"):
        load_config(CONFIGS / "train-tiny.yaml", ["batch_size=eight"])
    with pytest.raises(ValueError, match="exactly one of `encoder`"):
        load_config(CONFIGS / "train-tiny.yaml", ["encoder=sentence-transformers/all-MiniLM-L6-v2"])
    with pytest.raises(ValueError, match="not key=value"):
        load_config(CONFIGS / "train-tiny.yaml", ["learning_rate"])
    with pytest.raises(ValueError, match="mixed_precision"):
        load_config(CONFIGS / "train-tiny.yaml", ["mixed_precision=fp8"])
    with pytest.raises(ValueError, match="alignment_inputs must be a whole number >= 0"):
        load_config(CONFIGS / "train-tiny.yaml", ["alignment_inputs=-3"])
    with pytest.raises(ValueError, match="alignment_inputs only fit the aligned map"):
        load_config(CONFIGS / "train-tiny.yaml", ["alignment_inputs=5", "head.aligned=false"])


def test_fingerprint_ignores_run_keys_only():
    a = load_config(CONFIGS / "train-tiny.yaml")
    assert (
        a.fingerprint()
        == load_config(CONFIGS / "train-tiny.yaml", ["output_dir=elsewhere", "log_every=1"]).fingerprint()
    )
    b = load_config(CONFIGS / "train-tiny.yaml", ["learning_rate=0.5"])
    assert a.fingerprint() != b.fingerprint()
    assert b.differences(a.to_dict()) == ["learning_rate: 0.003 -> 0.5"]


def test_cli_reports_a_bad_key(capsys):
    assert cli_main(["train", str(CONFIGS / "train-tiny.yaml"), "num_epoch=2"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key 'num_epoch'" in err and "num_epochs" in err


@pytest.mark.parametrize("text", ["encoders:\n  - id: x\n   bad: [\n", "- a list\n- not a mapping\n"])
def test_cli_reports_a_broken_yaml_file_in_one_line(tmp_path, capsys, text):
    """A YAML syntax error was a 40-line PyYAML traceback from `hf-bridges train` (`stitch` named it)."""
    from hf_bridges import HfBridgesError

    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert cli_main(["train", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hf-bridges train: error: {path}:") and "Traceback" not in err
    with pytest.raises(HfBridgesError, match="not valid YAML|must hold a mapping"):
        load_config(path)


def test_dataclass_defaults_are_valid():
    assert TrainConfig(encoder="x").num_anchors == 256


def test_head_is_one_nested_group_and_old_spellings_warn(tmp_path):
    cfg = load_config(CONFIGS / "train-tiny.yaml", ["head.aggregation=sum"])
    assert cfg.head.classifier_hidden_size == 64 and cfg.head.aggregation == "sum"
    assert cfg.to_dict()["head"]["aggregation"] == "sum" and "aggregation" not in cfg.to_dict()
    old = tmp_path / "old.yaml"
    old.write_text("encoder: x\nclassifier_hidden_size: 16\nepochs: 2\nmax_length: 32\n")
    with pytest.warns(FutureWarning, match="'classifier_hidden_size' is deprecated.*'head.classifier_hidden_size'"):
        cfg = load_config(old)
    assert cfg.head.classifier_hidden_size == 16 and cfg.num_epochs == 2 and cfg.max_seq_length == 32
    with pytest.warns(FutureWarning, match="write 'num_epochs'"):
        assert load_config(None, ["encoder=x", "epochs=4"]).num_epochs == 4
    with pytest.warns(FutureWarning, match="write 'head.aggregation'"):
        assert TrainConfig(encoder="x", aggregation="sum").head.aggregation == "sum"


@pytest.mark.parametrize(
    "override, message",
    [
        ("head.projections=[cosin]", "did you mean 'cosine'"),
        ("head.classifier_hidden_size=true", "classifier_hidden_size: expected an integer"),
        ("head.agregation=sum", "did you mean 'aggregation'"),
    ],
)
def test_head_overrides_are_checked_strictly(override, message):
    from hf_bridges.modeling.registry import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, ["encoder=x", override])


def test_anchor_counts_the_training_rows_cannot_hold_are_warned(caplog):
    """num_anchors / alignment_inputs are picked from the training rows; when those run out, the counts were cut
    silently (a run 'with 600 anchors' had 64)."""
    from hf_bridges.training.build import build_model, build_tokenizer, load_data

    cfg = load_config("train-tiny", ["max_train_samples=64", "max_eval_samples=8", "alignment_inputs=20"])
    data = load_data(cfg)
    tokenizer = build_tokenizer(cfg, list(data["train"]["text"]))
    with caplog.at_level("WARNING", logger="hf_bridges.training.build"):
        model = build_model(cfg, data["train"], tokenizer)
    assert not caplog.records  # 32 anchors + 20 alignment inputs fit in 64 rows
    assert model.config.num_anchors == 52

    big = load_config(
        "train-tiny", ["max_train_samples=64", "max_eval_samples=8", "num_anchors=60", "alignment_inputs=20"]
    )
    with caplog.at_level("WARNING", logger="hf_bridges.training.build"):
        build_model(big, data["train"], tokenizer)
    assert "64 training rows hold 60 anchor(s) and 4 alignment input(s) of the 60 and 20 asked for" in caplog.text
