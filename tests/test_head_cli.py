"""``hf-bridges head push|pull|attach|inspect`` against the local Hub server."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_encoder
from hub_server import TOKEN, hub_fixture

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.cli import main
from hf_bridges.heads.format import CONFIG_NAME, HEAD_FILES

hub = pytest.fixture(hub_fixture)


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, tokenizer, anchor_texts):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0),
        anchors=anchor_texts,
        tokenizer=tokenizer,
        num_labels=5,
        id2label={i: f"topic{i}" for i in range(5)},
    )
    return model.save_head(tmp_path_factory.mktemp("cli") / "head")


def test_push_pull_inspect_attach(hub, head_dir, tiny_encoder_dir, tmp_path, capsys, tokenizer):
    assert main(["head", "push", str(head_dir), "alice/cli-head", "--token", TOKEN, "--endpoint", hub.endpoint]) == 0
    assert "pushed" in capsys.readouterr().out

    assert (
        main(["head", "pull", "alice/cli-head", "--output", str(tmp_path / "pulled"), "--endpoint", hub.endpoint]) == 0
    )
    assert all((tmp_path / "pulled" / name).read_bytes() == (head_dir / name).read_bytes() for name in HEAD_FILES)
    card = (tmp_path / "pulled" / "README.md").read_text()
    assert 'head="alice/cli-head"' in card and "path/to/this-head" not in card  # the card names its own repo

    assert main(["head", "inspect", "alice/cli-head", "--endpoint", hub.endpoint]) == 0
    out = capsys.readouterr().out
    assert "format version 2" in out and "topic0, topic1" in out and "bridge_head.safetensors" in out
    assert main(["head", "inspect", str(head_dir), "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["num_anchors"]
        == json.loads((head_dir / CONFIG_NAME).read_text())["num_anchors"]
    )

    output = tmp_path / "stitched"
    assert (
        main(
            [
                "head",
                "attach",
                "alice/cli-head",
                "--encoder",
                tiny_encoder_dir,
                "--subspace-selection",
                "auto",
                "--output",
                str(output),
                "--json",
                "--endpoint",
                hub.endpoint,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads(printed[: printed.rindex("}") + 1])
    assert report["score"] == pytest.approx(1.0, abs=1e-3) and report["compatible"]
    stitched = BridgeForSequenceClassification.from_pretrained(output).eval()
    assert stitched.config.subspace_weights == [
        1.0,
        1.0,
    ]  # the default head: cosine and the aligned component, both kept
    # a full model loads with transformers alone (remote code)
    assert "library_name: transformers" in (output / "README.md").read_text()
    with torch.no_grad():
        assert stitched(**tokenizer(["market stock bank"], return_tensors="pt")).logits.shape == (1, 5)


def test_errors_are_reported_not_raised(hub, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["head", "inspect", str(tmp_path / "empty")]) == 1
    assert "not a bridge head" in capsys.readouterr().err
    assert main(["head", "pull", "alice/missing", "--endpoint", hub.endpoint]) == 1
    assert "no head repo" in capsys.readouterr().err
    assert main(["head", "push", str(tmp_path / "empty"), "alice/x", "--token", TOKEN, "--endpoint", hub.endpoint]) == 1
    assert "not a bridge head" in capsys.readouterr().err
    assert "alice/x" not in hub.state.repos  # nothing published


def test_push_to_a_new_branch_creates_it(hub, head_dir, tmp_path, capsys):
    """docs: `hf-bridges head push FOLDER REPO --revision BRANCH`. A branch the repo does not have yet was the Hub's
    404 "Revision Not Found" (a commit needs an existing branch): the push creates it, main stays as it was."""
    endpoint = ["--endpoint", hub.endpoint]
    assert main(["head", "push", str(head_dir), "alice/branched", "--token", TOKEN, *endpoint]) == 0
    assert (
        main(["head", "push", str(head_dir), "alice/branched", "--revision", "dev", "--token", TOKEN, *endpoint]) == 0
    )
    assert "pushed" in capsys.readouterr().out
    for revision in ("dev", "main"):
        out = tmp_path / revision
        assert main(["head", "pull", "alice/branched", "--revision", revision, "--output", str(out), *endpoint]) == 0
        assert (out / CONFIG_NAME).read_bytes() == (head_dir / CONFIG_NAME).read_bytes()
    assert (
        main(["head", "push", str(head_dir), "alice/branched", "--revision", "dev", "--token", TOKEN, *endpoint]) == 0
    )
