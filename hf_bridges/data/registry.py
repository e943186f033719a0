"""The dataset registry: every loader returns a ``datasets.DatasetDict`` (train/test) with an integer ``label``
column carrying ``ClassLabel`` names, and a ``text`` (or ``image``) column."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import datasets

from ..modeling.registry import ConfigError, Registry, did_you_mean, registrar

DatasetLoader = Callable[..., datasets.DatasetDict]
DATASETS: Registry[DatasetLoader] = Registry("dataset")
register_dataset = registrar(DATASETS)


def load_labelled_dataset(name: str, **kwargs: Any) -> datasets.DatasetDict:
    """Load a registered dataset by name (``bbc_news``, ``files``...). Options the loader does not take, or a
    required one left out, are one :class:`ConfigError` naming the option (was the loader's ``TypeError``)."""
    loader = DATASETS.get(name)
    check_options(name, loader, kwargs)
    return loader(**kwargs)


def check_options(name: str, loader: Callable[..., Any], options: dict[str, Any]) -> None:
    parameters = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if key not in valid:
            raise ConfigError(
                f"dataset {name!r}: unknown option {key!r}{did_you_mean(key, valid)} "
                f"(its options: {', '.join(valid) or 'none'})"
            )
    missing = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n not in options]
    if missing:
        raise ConfigError(
            f"dataset {name!r} needs the option(s) {', '.join(missing)} "
            f"(e.g. options: {{{missing[0]}: ...}} in a stitch config, dataset_kwargs.{missing[0]}=... for train)"
        )


def stratified_split(dataset: datasets.Dataset, test_size: float, seed: int) -> datasets.DatasetDict:
    """A fixed, label-stratified train/test split (datasets' own implementation)."""
    return dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
