"""Edited or broken head configs and weights are refused by field / tensor name before anything is allocated
(issue 11, probes 3 and 8)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import make_encoder
from safetensors.torch import load_file, save_file

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.format import CONFIG_NAME, WEIGHTS_NAME, HeadFormatError, read_head
from hf_bridges.heads.hub import load_head


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, tokenizer, anchor_texts):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    return model.save_head(tmp_path_factory.mktemp("heads") / "head")


def _edit(head_dir, tmp_path, **changes):
    folder = shutil.copytree(head_dir, tmp_path / "edited")
    config = json.loads((folder / CONFIG_NAME).read_text())
    config.update(changes)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "field, value",
    [
        ("projections", ["cosine", "no-such-projection"]),
        ("projections", "cosine"),
        ("aggregation", "nope"),
        ("anchor_batch_size", 0),
        ("classifier_hidden_size", 2e7),
        ("classifier_hidden_size", 1000000000),
        ("files", ["bridge_head.safetensors"]),
        ("encoder", None),
        ("bridge_head_format_version", "1"),
    ],
)
def test_malformed_config_names_the_field(head_dir, tmp_path, tokenizer, field, value):
    folder = _edit(head_dir, tmp_path, **{field: value})
    with pytest.raises(HeadFormatError, match=f"field '{field}'") as error:
        BridgeForSequenceClassification.from_encoder(make_encoder(0), head=str(folder), tokenizer=tokenizer)
    assert "tokenizer" not in str(error.value)
    with pytest.raises(HeadFormatError, match=f"field '{field}'"):
        load_head(folder)


def test_hidden_size_checked_against_the_safetensors_header(head_dir, tmp_path):
    folder = _edit(head_dir, tmp_path, classifier_hidden_size=300)
    with pytest.raises(HeadFormatError, match="'classifier_hidden_size' is 300 but .*classifier.0.weight"):
        read_head(folder, verify=False)


def test_non_finite_weights_are_refused_with_the_tensor_name(head_dir, tmp_path):
    folder = shutil.copytree(head_dir, tmp_path / "nan")
    state = load_file(str(folder / WEIGHTS_NAME))
    key = sorted(state)[0]
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    with pytest.raises(HeadFormatError, match=f"tensor '{key}' holds NaN"):
        read_head(folder, verify=False)
