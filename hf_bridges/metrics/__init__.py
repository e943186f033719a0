"""Metrics: classification scores as `evaluate` modules shipped inside the package (they load offline by path),
and latent similarity between two spaces whose rows are the same samples."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .latent import jaccard_at_k, latent_similarity, mean_cosine, mrr

METRICS_DIR = Path(__file__).parent


def available_metrics() -> list[str]:
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


@cache
def load_metric(name: str):
    """``evaluate.load`` on the shipped module folder: no Hub access."""
    import evaluate

    if name not in available_metrics():
        raise ValueError(f"unknown metric {name!r}; shipped metrics: {available_metrics()}")
    return evaluate.load(str(METRICS_DIR / name))


def classification_scores(predictions, references) -> dict[str, float]:
    """Accuracy and macro-F1 through the shipped evaluate modules."""
    predictions, references = [int(p) for p in predictions], [int(r) for r in references]
    # the modules' own _compute: ``compute`` would first write both lists to an Arrow cache file under a file lock
    # and read them back, on every call (17 % of a stitch run's evaluation, issue 21.3); the numbers are the same
    return {
        "accuracy": load_metric("accuracy")._compute(predictions=predictions, references=references)["accuracy"],
        "macro_f1": load_metric("f1")._compute(predictions=predictions, references=references, average="macro")["f1"],
    }


__all__ = [
    "available_metrics",
    "classification_scores",
    "jaccard_at_k",
    "latent_similarity",
    "load_metric",
    "mean_cosine",
    "mrr",
]
