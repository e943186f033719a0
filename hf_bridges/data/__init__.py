"""Labelled datasets (text and image) from local files, and the anchor selection strategies.

Loaders read packaged corpora, Debian data packages or the user's csv/json/parquet: nothing is downloaded.
"""

from . import text, vision  # noqa: F401  (register their loaders)
from .registry import DATASETS, load_labelled_dataset, register_dataset, stratified_split

__all__ = ["DATASETS", "load_labelled_dataset", "register_dataset", "stratified_split"]
