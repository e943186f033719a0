"""Bad input gets a clear error naming the problem (never a NaN or a shape error from deep inside torch)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig

from hf_bridges import BRIDGE_FORMAT_VERSION, BridgeConfig, BridgeForSequenceClassification


@pytest.fixture(scope="module")
def model(tiny_encoder_dir, anchor_texts):
    return BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=5).eval()


@pytest.mark.parametrize("anchors", [[], None, ["only one"]])
def test_too_few_anchors(tiny_encoder_dir, anchors):
    with pytest.raises(ValueError, match="at least 2 anchors"):
        BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchors, num_labels=2)


def test_unknown_projection_and_aggregation_list_valid_names():
    with pytest.raises(ValueError, match=r"unknown projection 'cos'.*'cosine'.*'linf'"):
        BridgeConfig(projections=["cos"])
    with pytest.raises(ValueError, match=r"unknown aggregation 'mean'.*'concat'.*'mlp_sum'"):
        BridgeConfig(aggregation="mean")
    with pytest.raises(ValueError, match="projections is empty"):
        BridgeConfig(projections=[])
    with pytest.raises(ValueError, match="unknown pooling"):
        BridgeConfig(pooling="last")


def test_nan_and_inf_embeddings_are_named(model):
    features = torch.randn(3, 32)
    features[1, 4] = float("nan")
    features[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or inf embeddings for batch rows \[1, 2\]"):
        model(features=features)


def test_zero_vectors_give_finite_logits(model):
    logits = model(features=torch.zeros(2, 32)).logits
    assert torch.isfinite(logits).all()


def test_labels_out_of_range(model):
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\].*got values from 0 to 7"):
        model(features=torch.randn(2, 32), labels=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match=r"labels must be in"):
        model(features=torch.randn(2, 32), labels=torch.tensor([-1, 1]))


def test_empty_batch(model):
    with pytest.raises(ValueError, match="empty batch"):
        model(input_ids=torch.zeros(0, 4, dtype=torch.long), attention_mask=torch.zeros(0, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"):
        model(features=torch.zeros(0, 32))


def test_wrong_embedding_width(model):
    with pytest.raises(ValueError, match="embedding width 16 differs from the anchors' width 32"):
        model(features=torch.randn(2, 16))


def test_no_inputs(model):
    with pytest.raises(ValueError, match="pass input_ids"):
        model()


def test_config_from_a_newer_format_version(model, tmp_path):
    model.config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["bridge_format_version"] = BRIDGE_FORMAT_VERSION + 1
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="upgrade hf_bridges"):
        AutoConfig.from_pretrained(tmp_path)


def test_bad_subspace_weights():
    # the default head: one projection (cosine) + the aligned component, so two weights
    with pytest.raises(ValueError, match=r"3 values for 1 projections \+ the aligned component"):
        BridgeConfig(subspace_weights=[1, 0, 1])
    with pytest.raises(ValueError, match="positive sum"):
        BridgeConfig(subspace_weights=[0, 0])


def test_unloadable_encoder_says_how_to_fix(tmp_path):
    with pytest.raises(OSError, match="no folder at that path"):
        BridgeForSequenceClassification.from_encoder(str(tmp_path / "missing"), anchors=["a", "b"], num_labels=2)


def test_a_bridge_passed_as_the_encoder_names_the_encoder_inside_it(model, tiny_encoder_dir, anchor_texts, tmp_path):
    """A saved (or in-memory) bridge given where an encoder goes failed in the first forward with "'BridgeModelOutput'
    object has no attribute 'last_hidden_state'"; the encoder inside it is what attaches."""
    from transformers import AutoModel, AutoTokenizer

    from hf_bridges import ConfigError

    model.save_pretrained(tmp_path / "bridge")
    head = model.save_head(tmp_path / "head", card=False)
    for given in (str(tmp_path / "bridge"), model):
        with pytest.raises(
            ConfigError, match=r"is a bridge model \(model_type hf_bridges\), not an encoder: .*\.encoder"
        ):
            BridgeForSequenceClassification.from_encoder(given, head=str(head), anchor_cache=False)
        with pytest.raises(ConfigError, match="not an encoder"):
            BridgeForSequenceClassification.from_encoder(given, anchors=anchor_texts, num_labels=5)
    inner = AutoModel.from_pretrained(tmp_path / "bridge").encoder  # what the message says to pass
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "bridge")
    attached = BridgeForSequenceClassification.from_encoder(
        inner, tokenizer=tokenizer, head=str(head), anchor_cache=False
    )
    batch = tokenizer(anchor_texts[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(attached.eval()(**batch).logits, model(**batch).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_works_where_the_error_line_suggests_it(tmp_path, capsys, where):
    """Every error ends "(rerun with --debug for the traceback)"; a user appends it to the failing command, where
    argparse refused it ("unrecognized arguments: --debug") when only the top-level parser knew it."""
    from hf_bridges import HfBridgesError
    from hf_bridges.cli import main

    argv = ["head", "inspect", str(tmp_path / "missing")]
    assert main(argv) == 1
    assert "(rerun with --debug for the traceback)" in capsys.readouterr().err
    with pytest.raises(HfBridgesError, match="no head folder"):
        main(["--debug", *argv] if where == "before" else [*argv, "--debug"])


@pytest.mark.parametrize(
    "call",
    [
        "features of another width",
        "anchors of another width",
        "anchor embeddings of another count",
        "no texts to predict",
        "anchors and a head",
        "one anchor",
    ],
)
def test_bad_input_is_an_hf_bridges_error(model, tiny_encoder_dir, anchor_texts, call):
    """Bad input a user meets (a batch of another encoder's width, a wrong anchor count, nothing to predict, mixed
    arguments) is an ``HfBridgesError`` a caller can catch as one family, and still the ``ValueError`` it was."""
    from hf_bridges import HfBridgesError

    calls = {
        "features of another width": lambda: model(features=torch.randn(2, 48)),
        "anchors of another width": lambda: model.head.represent(torch.randn(2, 32), torch.randn(8, 48)),
        "anchor embeddings of another count": lambda: model.set_anchor_embeddings(torch.randn(3, 32)),
        "no texts to predict": lambda: model.predict([]),
        "anchors and a head": lambda: BridgeForSequenceClassification.from_encoder(
            tiny_encoder_dir, anchors=anchor_texts, head="some/head", num_labels=2
        ),
        "one anchor": lambda: BridgeForSequenceClassification.from_encoder(
            tiny_encoder_dir, anchors=["only one"], num_labels=2
        ),
    }
    with pytest.raises(HfBridgesError) as error:
        calls[call]()
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("damage", ["config.json", "model.safetensors"])
def test_a_corrupted_saved_model_file_is_named_with_the_fix(model, tmp_path, damage):
    """A truncated config.json was transformers' OSError "not a valid JSON file" with no fix, and a truncated weights
    file a plain OSError: both are one HfBridgesError naming the file and what to do (still an OSError)."""
    from hf_bridges import HfBridgesError

    model.save_pretrained(tmp_path / "saved")
    path = tmp_path / "saved" / damage
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(HfBridgesError, match=rf"{damage} is truncated or corrupted .*save the model again") as error:
        BridgeForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert isinstance(error.value, OSError)


def test_a_mistyped_encoder_id_offline_is_one_line_with_the_closest_cached_id(monkeypatch):
    """A typo in an encoder id (offline, so not in the cache) gave transformers' "couldn't connect to
    huggingface.co ... check your internet connection", and for a tokenizer "Pass tokenizer=... explicitly": neither
    names the problem. Now the snapshot check's line, as `hf-bridges stitch` gives it (still an OSError)."""
    from huggingface_hub import constants

    from hf_bridges import HfBridgesError
    from hf_bridges.building.loading import load_encoder, load_tokenizer

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    typo = "sentence-transformers/all-MiniLM-L6-v3"
    for load in (load_encoder, load_tokenizer):
        with pytest.raises(HfBridgesError, match=rf"'{typo}' .*is not in the Hugging Face cache and HF_HUB_OFFLINE=1"):
            load(typo)
        with pytest.raises(OSError, match="offline-seed"):
            load(typo)
