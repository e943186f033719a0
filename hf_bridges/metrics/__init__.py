"""Metrics: classification scores as `evaluate` modules shipped inside the package (they load offline by path; the
stitch and training loops compute the same numbers with the scikit-learn calls they make), and latent similarity
between two spaces whose rows are the same samples."""

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
    """Accuracy and macro-F1, the numbers the shipped ``accuracy`` and ``f1`` modules give (scikit-learn's
    ``accuracy_score`` and ``f1_score(average="macro", zero_division=0)``: the same float operations, bit for bit,
    tested), from one count per class. The stitch run scores every (head, encoder) cell: ``import evaluate`` costs
    2.6 s of CPU per process (it imports transformers' pipelines), scikit-learn 1.1 s and ~1.5 ms of input checks per
    call, more than a small head's predictions; ``load_metric`` still serves the modules for ``evaluate`` users."""
    import numpy as np

    predicted = np.asarray([int(p) for p in predictions], dtype=np.int64)
    true = np.asarray([int(r) for r in references], dtype=np.int64)
    if predicted.shape != true.shape or true.size == 0:
        raise ValueError(
            f"classification scores need as many predictions as references, at least one: got {predicted.size} "
            f"and {true.size}"
        )
    labels = np.union1d(true, predicted)  # scikit-learn's labels: every class either side names, sorted
    true_index, predicted_index = np.searchsorted(labels, true), np.searchsorted(labels, predicted)
    hit = true == predicted
    tp = np.bincount(true_index[hit], minlength=len(labels)).astype(np.float64)
    support = np.bincount(true_index, minlength=len(labels)) + np.bincount(predicted_index, minlength=len(labels))
    # f = 2 tp / (true + predicted) per class (never 0 / 0: each label occurs on one side), then np.mean as sklearn
    f1 = (2.0 * tp) / support.astype(np.float64)
    return {"accuracy": float(np.mean(hit)), "macro_f1": float(np.mean(f1))}


__all__ = [
    "available_metrics",
    "classification_scores",
    "jaccard_at_k",
    "latent_similarity",
    "load_metric",
    "mean_cosine",
    "mrr",
]
