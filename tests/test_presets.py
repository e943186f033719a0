"""Presets by name or by path, from any directory (hf_bridges.presets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_bridges.modeling.registry import HfBridgesError, UnknownNameError
from hf_bridges.presets import list_presets, presets_dir, resolve_preset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_presets_are_the_configs_folder():
    assert presets_dir().resolve() == CONFIGS.resolve()
    assert set(list_presets()) == {p.stem for p in CONFIGS.glob("*.yaml")}
    assert list_presets("stitch") and all(n.startswith("stitch-") for n in list_presets("stitch"))
    assert list_presets("train") and all(n.startswith("train-") for n in list_presets("train"))


@pytest.mark.parametrize(
    "name,kind",
    [
        ("stitch-bbc", None),
        ("stitch-bbc.yaml", None),
        ("bbc", "stitch"),
        ("configs/stitch-bbc.yaml", None),
    ],
)
def test_names_resolve_from_any_directory(name, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = resolve_preset(name, kind=kind)
    assert found.resolve() == (CONFIGS / "stitch-bbc.yaml").resolve()


def test_an_existing_path_wins_over_a_preset_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stitch-bbc.yaml").write_text("name: mine\n")
    assert resolve_preset("stitch-bbc.yaml") == Path("stitch-bbc.yaml")
    assert resolve_preset(tmp_path / "stitch-bbc.yaml") == tmp_path / "stitch-bbc.yaml"


def test_unknown_names_list_the_presets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownNameError, match=r"did you mean 'stitch-bbc'.*stitch-fmnist") as info:
        resolve_preset("stich-bbc")
    assert isinstance(info.value, HfBridgesError) and "train-tiny" in str(info.value)
    with pytest.raises(UnknownNameError, match=r"shipped train presets: .*train-tiny") as info:
        resolve_preset("stitch-bbc", kind="train")
    assert "stitch-fmnist" not in str(info.value)
    with pytest.raises(UnknownNameError, match=r"no preset file at .*elsewhere.*stitch-bbc"):
        resolve_preset(tmp_path / "elsewhere" / "stitch-bbc.yaml")
    with pytest.raises(UnknownNameError, match=r"unknown preset kind 'stich'.*did you mean 'stitch'"):
        resolve_preset("stitch-bbc", kind="stich")
