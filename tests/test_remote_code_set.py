"""Issue 22: what ``save_pretrained`` ships next to the weights, computed with transformers' own
``get_relative_imports`` from the saved ``modeling_*.py``: a handful of files that run a bridge, importing nothing of
the installed package at import time and holding no ``importlib`` hook (what builds a bridge is a lazy call into
the package, inside ``try`` so transformers' import check skips it)."""

from __future__ import annotations

import ast
import json
import os
import sys

import pytest
from transformers.dynamic_module_utils import get_imports, get_relative_imports

MAX_FILES = 5
MAX_LINES = 2500


def _closure(folder, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [f"{module}.py" for module in get_relative_imports(os.path.join(folder, name))]
    return seen


def _module_level_imports(tree: ast.Module) -> list[str]:
    """Imports executed when the module is imported (top level, outside functions and classes' methods)."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("kind", ["text", "image"])
def test_the_saved_remote_code_set_is_small_and_self_contained(kind, tiny_encoder_dir, anchor_texts, tmp_path):
    from hf_bridges import BridgeForImageClassification, BridgeForSequenceClassification

    if kind == "text":
        bridge = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, anchors=anchor_texts, num_labels=2)
    else:
        from test_vision import gray_images, mobilenet_processor, tiny_mobilenet

        bridge = BridgeForImageClassification.from_encoder(
            tiny_mobilenet(), anchors=gray_images(4), image_processor=mobilenet_processor(), num_labels=2
        )
    bridge.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    starts = {entry.split(".")[0] + ".py" for entry in auto_map.values()}
    shipped = set().union(*(_closure(tmp_path, start) for start in starts))
    assert shipped == {name for name in os.listdir(tmp_path) if name.endswith(".py")}  # nothing else copied
    lines = sum(len((tmp_path / name).read_text().splitlines()) for name in shipped)
    assert len(shipped) <= MAX_FILES and lines <= MAX_LINES, (sorted(shipped), lines)
    for name in shipped:
        source = (tmp_path / name).read_text()
        tree = ast.parse(source)
        top = _module_level_imports(tree)
        assert not [m for m in top if m.split(".")[0] in ("hf_bridges", "importlib")], (name, top)
        assert "importlib" not in source, name
        # transformers' own check of what a trust_remote_code user must have installed
        third_party = set(get_imports(str(tmp_path / name))) - set(sys.stdlib_module_names)
        assert third_party <= {"torch", "transformers", "numpy", "huggingface_hub", "tqdm"}, (name, third_party)
    assert BridgeForImageClassification.__module__ == BridgeForSequenceClassification.__module__  # one family file
