"""Helpers shared by the stitching tests: tiny encoders saved like Hub models and a small labelled csv."""

from __future__ import annotations

import csv
from pathlib import Path

from helpers import make_encoder, make_tokenizer, topic_texts

DEFAULT_STITCH_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "stitch-bbc.yaml"


def small_bbc_config():
    """The default config (the two real MiniLMs) on a 120/50 BBC subset with 30 anchors, 2 seeds and 3 methods."""
    from hf_bridges.stitching import load_config
    from hf_bridges.stitching.config import MethodSpec, SelectSpec

    config = load_config(DEFAULT_STITCH_CONFIG)
    config.dataset.max_train, config.dataset.max_test = 120, 50
    for encoder in config.encoders:
        encoder.max_seq_length = 48
    config.anchors.num_anchors = 30
    config.anchors.alignment = 0  # the preset's 1,000 do not fit 120 train samples (and no method here has a map)
    config.training.num_epochs = 8
    config.seeds = [0, 1]
    config.latent.max_samples = 50
    config.methods = [
        MethodSpec(name="absolute", kind="absolute"),
        MethodSpec(name="cosine", projections=["cosine"]),
        MethodSpec(
            name="product+select",
            projections=["cosine", "euclidean", "l1", "linf"],
            aggregation="concat",
            subspace_dropout=0.5,
            select=SelectSpec(),
        ),
    ]
    return config


def save_tiny_encoder(folder: Path, seed: int, hidden_size: int) -> str:
    make_encoder(seed=seed, hidden_size=hidden_size).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return str(folder)


def write_topic_csv(path: Path, n_per_class: int = 16) -> str:
    texts, labels = topic_texts(n_per_class, seed=7)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body", "topic"])
        writer.writerows(zip(texts, labels))
    return str(path)


def tiny_config(encoders: list[str], data_csv: str, **overrides) -> dict:
    config = {
        "name": "tiny",
        "dataset": {
            "name": "files",
            "options": {"data_files": data_csv, "test_size": 0.25, "seed": 0},
            "text_column": "body",
            "label_column": "topic",
        },
        "encoders": [{"id": e, "name": f"enc{i}", "max_seq_length": 16} for i, e in enumerate(encoders)],
        "anchors": {"num_anchors": 12, "strategy": "stratified", "seed": 0},
        "training": {"num_epochs": 3, "batch_size": 16},
        "seeds": [0],
        "latent": {"k": 3, "max_samples": 20},
        "methods": [
            {"name": "absolute", "kind": "absolute"},
            {"name": "cosine", "projections": ["cosine"]},
            {
                "name": "product-select",
                "projections": ["cosine", "euclidean"],
                "aggregation": "mlp_sum",
                "subspace_dropout": 0.5,
                "select": {"mode": "hard", "tolerance": 0.02},
            },
        ],
    }
    for key, value in overrides.items():
        config[key] = value
    return config
