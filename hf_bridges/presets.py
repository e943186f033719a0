"""The YAML presets (``configs/*.yaml``), addressable by name as well as by path.

The presets live in the top-level ``configs/`` folder; ``hf_bridges/configs`` is a link to it, so the same files ship
inside the wheel (package data, like ``model_cards/``) and are read from the source tree in an editable install.
``hf-bridges stitch stitch-bbc`` and ``hf-bridges stitch configs/stitch-bbc.yaml`` then work from any directory.
"""

from __future__ import annotations

from pathlib import Path

from .modeling.registry import UnknownNameError, did_you_mean

SUFFIXES = (".yaml", ".yml")
KINDS = ("stitch", "train")


def presets_dir() -> Path:
    """The folder of shipped presets: in the installed package, else in the source checkout."""
    here = Path(__file__).resolve().parent
    for folder in (here / "configs", here.parent / "configs"):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no presets folder (configs/) next to {here}; reinstall hf_bridges")


def list_presets(kind: str | None = None) -> list[str]:
    """Names of the shipped presets (file stems, e.g. ``stitch-bbc``), only those of ``kind`` if given."""
    _check_kind(kind)
    try:
        folder = presets_dir()
    except FileNotFoundError:
        return []
    names = sorted(p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return [n for n in names if kind is None or n.startswith(f"{kind}-")]


def resolve_preset(name_or_path: str | Path, kind: str | None = None) -> Path:
    """The YAML file meant by ``name_or_path``: an existing path wins; else a shipped preset by name.

    A name may omit the suffix (``stitch-bbc``) and, with ``kind``, the kind prefix (``bbc`` with ``kind="stitch"``);
    a path into ``configs/`` that does not exist from the current directory (``configs/stitch-bbc.yaml`` run
    elsewhere) also finds the shipped copy. Anything else raises :class:`UnknownNameError` listing the presets.
    """
    _check_kind(kind)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UnknownNameError(f"{path} is a folder, not a preset file; presets: {_listing(kind)}")
    parent = path.parent.name
    if path.is_absolute() or parent not in ("", "configs"):  # a real path elsewhere: say so, do not guess a name
        raise UnknownNameError(f"no preset file at {path}; shipped presets (pass a name): {_listing(kind)}")
    stem = path.stem if path.suffix in SUFFIXES else path.name
    candidates = [stem] + ([f"{kind}-{stem}"] if kind and not stem.startswith(f"{kind}-") else [])
    shipped = set(list_presets(kind))
    for candidate in candidates:
        if candidate in shipped:
            folder = presets_dir()
            return next(folder / f"{candidate}{s}" for s in SUFFIXES if (folder / f"{candidate}{s}").is_file())
    names = list_presets(kind)
    what = f"{kind} preset" if kind else "preset"
    raise UnknownNameError(
        f"no {what} or file named {str(name_or_path)!r}{did_you_mean(stem, names)}; "
        f"shipped {what}s: {_listing(kind)} (or pass the path of a YAML file)"
    )


def _listing(kind: str | None) -> str:
    names = list_presets(kind)
    return ", ".join(names) if names else "(none found: reinstall hf_bridges)"


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise UnknownNameError(f"unknown preset kind {kind!r}{did_you_mean(kind, KINDS)}; kinds: {', '.join(KINDS)}")
