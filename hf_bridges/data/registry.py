"""The dataset registry: every loader returns a ``datasets.DatasetDict`` (train/test) with an integer ``label``
column carrying ``ClassLabel`` names, and a ``text`` (or ``image``) column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets

from ..modeling.registry import Registry, registrar

DatasetLoader = Callable[..., datasets.DatasetDict]
DATASETS: Registry[DatasetLoader] = Registry("dataset")
register_dataset = registrar(DATASETS)


def load_labelled_dataset(name: str, **kwargs: Any) -> datasets.DatasetDict:
    """Load a registered dataset by name (``bbc_news``, ``files``...)."""
    return DATASETS.get(name)(**kwargs)


def stratified_split(dataset: datasets.Dataset, test_size: float, seed: int) -> datasets.DatasetDict:
    """A fixed, label-stratified train/test split (datasets' own implementation)."""
    return dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
