"""The stitching run: validate, embed (cached), pick anchors once, train heads, score every encoder pair, report."""

from __future__ import annotations

import inspect
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import EmbeddingCache, default_cache_root
from .config import MAPPED_KINDS, ConfigError, StitchConfig, check_best_head, did_you_mean
from .distributed import cached_embeddings, head_accelerator, is_main_process, rank_note, world_size
from .encoder_kinds import get_encoder_kind
from .validate import validate_split

if TYPE_CHECKING:
    import datasets


def check_output_dir(path: Path, what: str = "output folder", fix: str = "--output-dir") -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ConfigError(f"{what} {path} is not writable ({error}); pass another {fix}") from None


def _subset(split, limit: int | None, seed: int, key: str = "dataset.max_train (--max-train)"):
    if limit is None or limit >= len(split):
        return split
    classes = len(set(split["label"]))
    if limit < classes:  # sklearn's "The train_size = 2 should be ..." (for max_test too) named neither key nor fix
        raise ConfigError(f"{key} = {limit} is below the {classes} classes: a stratified subset needs one row of each")
    return split.train_test_split(train_size=limit, seed=seed, stratify_by_column="label")["train"]


def load_splits(config: StitchConfig, input_column: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Train/test ``datasets`` splits with the configured columns renamed to (input_column, label)."""
    from ..data import DATASETS, load_labelled_dataset

    spec = config.dataset
    if spec.name not in DATASETS:
        raise ConfigError(
            f"dataset.name: unknown dataset {spec.name!r}{did_you_mean(spec.name, DATASETS)} "
            f"(registered: {sorted(DATASETS)})"
        )
    options = dict(spec.options)
    text_column, label_column = spec.text_column, spec.label_column
    accepted = inspect.signature(DATASETS[spec.name]).parameters
    if "text_column" in accepted and "label_column" in accepted:  # the loader renames to text/label itself
        options.setdefault("text_column", text_column)
        options.setdefault("label_column", label_column)
        text_column, label_column = "text", "label"
    data = load_labelled_dataset(spec.name, **options)
    for split in ("train", "test"):
        if split not in data:
            raise ConfigError(f"dataset {spec.name!r} has no {split!r} split (splits: {list(data)})")
        columns = data[split].column_names
        for column, role in ((label_column, "label_column"), (text_column, "text_column")):
            if column not in columns:
                raise ConfigError(
                    f"dataset.{role}: column {column!r} is not in the {split} split"
                    f"{did_you_mean(column, columns)} (columns: {columns})"
                )
    for split in ("train", "test"):
        validate_split(data[split], text_column, label_column, split, (spec.text_column, spec.label_column))
    renames = {text_column: input_column, label_column: "label"}
    renames = {k: v for k, v in renames.items() if k != v}
    if renames:
        data = data.rename_columns(renames)
    if "ClassLabel" not in type(data["train"].features["label"]).__name__:
        data = data.class_encode_column("label")
    return (
        _subset(data["train"], spec.max_train, 0),
        _subset(data["test"], spec.max_test, 0, "dataset.max_test (--max-test)"),
    )


def prepare(config: StitchConfig, output_dir: Path) -> tuple[dict[str, dict], datasets.Dataset, datasets.Dataset]:
    """Every check that needs the world but no model: run before any embedding or training."""
    check_output_dir(output_dir)
    if config.best_head is not None:
        check_best_head(config)  # again: the Python API may set best_head after parsing
    if config.best_head is not None and config.best_head.repo_id:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise ConfigError(
                f"best_head.repo_id is {config.best_head.repo_id!r} but HF_HUB_OFFLINE=1, so the push "
                "would fail after the run: unset HF_HUB_OFFLINE, or drop the repo id to only write "
                "<output-dir>/best-head/ (push it later with `hf-bridges head push`)"
            )
    kinds = {get_encoder_kind(e.kind).input_column for e in config.encoders}
    if len(kinds) != 1:
        raise ConfigError(f"encoders read different input columns {sorted(kinds)}; one run stitches one modality")
    identities = {e.name: {**get_encoder_kind(e.kind).identity(e)} for e in config.encoders}
    train, test = load_splits(config, kinds.pop())
    per_class = np.bincount(np.asarray(train["label"]))
    wanted = config.anchors.num_anchors + config.anchors.alignment
    if wanted > len(train):
        raise ConfigError(
            f"anchors.num_anchors + anchors.alignment = {config.anchors.num_anchors} + {config.anchors.alignment} "
            f"but the train split has only {len(train)} samples; lower them (--anchors / --alignment)"
            + (" or raise dataset.max_train (--max-train)" if config.dataset.max_train is not None else "")
        )
    if len(per_class) < 2 or (per_class > 0).sum() < 2:
        raise ConfigError("the train split has fewer than 2 classes; nothing to classify")
    return identities, train, test


def embed_splits(
    config: StitchConfig,
    identities: dict,
    train: datasets.Dataset,
    test: datasets.Dataset,
    cache: EmbeddingCache,
    quiet: bool = False,
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, dict]]:
    """Every encoder's train and test embeddings, from the cache or embedded into it: ``{(name, split): array}``
    and the cache hits / misses per encoder."""
    embeddings, cache_stats = {}, {}
    dealt = [0]  # shards dealt to the processes so far (multi-process launch): the deal continues across splits
    for spec in config.encoders:
        kind = get_encoder_kind(spec.kind)
        stats: dict = {}
        for split_name, split in (("train", train), ("test", test)):
            embeddings[spec.name, split_name] = cached_embeddings(
                cache,
                identities[spec.name],
                split,
                kind.input_column,
                lambda s=spec, k=kind: k.load(s),
                dealt=dealt,
                desc=f"embed {spec.name}/{split_name}",
                batch_size=spec.batch_size,
                stats=stats,
                progress=not quiet,
            )
        cache_stats[spec.name] = stats
    return embeddings, cache_stats


def choose_anchors(config: StitchConfig, embeddings: dict, train_labels: np.ndarray) -> tuple[list[int], str]:
    """The anchor indices into the train split, shared by all encoders, and the encoder space they were picked in."""
    from ..data.anchors import needs_embeddings, select_anchors

    space = config.anchors.encoder or config.encoders[0].name
    anchor_idx = select_anchors(
        config.anchors.strategy,
        config.anchors.num_anchors,
        config.anchors.seed,
        labels=train_labels,
        embeddings=embeddings[space, "train"] if needs_embeddings(config.anchors.strategy) else None,
    )
    return anchor_idx, space


def run_stitch(
    config: StitchConfig,
    output_dir: str | os.PathLike,
    cache_dir: str | None = None,
    quiet: bool = False,
    hub_token: str | None = None,
    hub_endpoint: str | None = None,
) -> dict:
    """The whole benchmark; returns the results dict (also written to ``output_dir/results.json``).

    With ``config.best_head`` set, the best relative head is also written to ``output_dir/best-head/`` and pushed
    to ``best_head.repo_id`` if given (``hub_token``/``hub_endpoint``: default the stored login / HF_ENDPOINT).

    Under ``accelerate launch`` / ``torchrun`` every process embeds its share of the cache shards; then the main
    process alone trains and scores the heads and returns the results (identical to one process's: see
    ``distributed.py``), the others return ``{"embedding_only": True, "process": "process i/N", "timing_s": ...}``."""
    from tqdm.auto import tqdm

    from ..data.anchors import select_alignment_set
    from .best_head import BestHeadTracker, push_best_head, save_best_head
    from .evaluation import evaluate_pair
    from .report import StitchResults, summarise, write_outputs
    from .training import train_head

    output_dir = Path(output_dir)
    timing = {"embedding": 0.0, "heads": 0.0, "evaluation": 0.0}
    t0 = time.perf_counter()
    identities, train, test = prepare(config, output_dir)
    timing["setup"] = time.perf_counter() - t0  # validation + dataset loading
    t_embed = time.perf_counter()
    cache_root = Path(cache_dir or config.cache_dir or default_cache_root())
    check_output_dir(cache_root, "embedding cache", "--cache-dir (or cache_dir in the config)")  # before any model
    cache = EmbeddingCache(cache_root)
    embeddings, cache_stats = embed_splits(config, identities, train, test, cache, quiet)
    timing["embedding"] = time.perf_counter() - t_embed
    if not is_main_process():  # under `accelerate launch -n N`: the others only embed; heads train once, alone
        return {"process": rank_note(), "embedding_only": True, "timing_s": timing}
    accelerator = head_accelerator()  # the main process alone: no DDP over the processes that have left

    train_labels = np.asarray(train["label"], dtype=np.int64)
    test_labels = np.asarray(test["label"], dtype=np.int64)
    num_labels = int(max(train_labels.max(), test_labels.max()) + 1)
    anchor_idx, space = choose_anchors(config, embeddings, train_labels)
    anchors = {e.name: embeddings[e.name, "train"][anchor_idx] for e in config.encoders}
    # the alignment set: more train inputs (no labels) that only the methods with a map (MAPPED_KINDS) fit it on
    alignment_idx = select_alignment_set(len(train_labels), anchor_idx, config.anchors.alignment, config.anchors.seed)
    mapped_anchors = anchors
    if alignment_idx:
        mapped_anchors = {e.name: embeddings[e.name, "train"][anchor_idx + alignment_idx] for e in config.encoders}

    import torch

    runs, feature_cache, absolute_heads = [], {}, {}
    tracker = BestHeadTracker() if config.best_head is not None else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small GEMMs: extra OpenMP threads spin-wait on shared CPUs (see training.train_head)
    names = [e.name for e in config.encoders]
    total = len(config.methods) * len(config.seeds) * len(names) * config.training.num_epochs
    with tqdm(total=total, desc="training heads", unit="epoch", disable=quiet) as bar:
        for method in config.methods:
            method_anchors = mapped_anchors if method.kind in MAPPED_KINDS else anchors
            for seed in config.seeds:
                for source in names:
                    # the absolute and translation baselines train the same absolute head (same seed, rows and
                    # training): it is trained once and evaluated by both
                    shared = (seed, source) if method.kind in ("absolute", "translation") else None
                    if shared in absolute_heads:
                        head, head_seconds = absolute_heads[shared]
                        bar.update(config.training.num_epochs)
                    else:
                        t = time.perf_counter()
                        head = train_head(
                            method,
                            config.head,
                            config.training,
                            embeddings[source, "train"],
                            train_labels,
                            method_anchors[source],
                            num_labels,
                            seed,
                            accelerator,
                            bar,
                            feature_cache,
                            relative_anchors=len(anchor_idx),
                        )
                        head_seconds = time.perf_counter() - t
                        timing["heads"] += head_seconds
                        if shared is not None:
                            absolute_heads[shared] = head, head_seconds
                    t = time.perf_counter()
                    for target in names:
                        scores = evaluate_pair(
                            head,
                            method,
                            embeddings[source, "test"],
                            method_anchors[source],
                            embeddings[target, "test"],
                            method_anchors[target],
                            test_labels,
                            config.latent,
                            feature_cache,
                        )
                        runs.append(
                            {
                                "method": method.name,
                                "seed": seed,
                                "train": source,
                                "test": target,
                                "train_seconds": head_seconds,
                                **scores,
                            }
                        )
                    timing["evaluation"] += time.perf_counter() - t
                    if tracker is not None:
                        tracker.offer(method, seed, source, head, runs[-len(names) :])
    torch.set_num_threads(threads)
    timing["total"] = time.perf_counter() - t0
    results = StitchResults(
        config=config.to_dict(),
        encoders=identities,
        dataset={
            "name": config.dataset.name,
            "train": len(train),
            "test": len(test),
            "num_labels": num_labels,
            "label_names": train.features["label"].names,
        },
        anchors={
            "indices": anchor_idx,
            "strategy": config.anchors.strategy,
            "encoder_space": space,
            "alignment_indices": alignment_idx,
        },
        cache={"root": str(cache.root), "per_encoder": cache_stats},
        runs=runs,
        processes=world_size(),
        timing_s=timing,
    )
    results.summary = summarise(results, config)
    if tracker is not None:
        t = time.perf_counter()
        labels = [int(train_labels[i]) for i in anchor_idx]
        column = get_encoder_kind(config.encoders[0].kind).input_column
        texts = list(train.select([int(i) for i in anchor_idx])[column])
        results.best_head = save_best_head(tracker, results, config, texts, labels, anchors, output_dir)
        timing["best_head"] = time.perf_counter() - t
    results.outputs = write_outputs(results, config, output_dir)
    try:  # the head folder is on disk before the upload, and results.json is written whatever the push does
        if tracker is not None and config.best_head.repo_id:
            results.best_head["hub"] = push_best_head(results.best_head, config, hub_token, hub_endpoint)
    finally:
        results.write(output_dir)
    return results
