"""F1 score (macro by default): the harmonic mean of precision and recall, averaged over classes. An `evaluate`
module shipped with hf_bridges, so it loads offline by path."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = "F1 = 2 * (precision * recall) / (precision + recall); 'macro' averages the per-class F1 unweighted."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): ground-truth labels.
    labels (list of int): the classes to include (default: all that occur).
    average (str): 'macro' (default), 'micro', 'weighted', 'binary' or None (per class).
    sample_weight (list of float): optional per-sample weights.
Returns:
    f1 (float, or list of floats when average is None)
"""
_CITATION = "scikit-learn: Machine Learning in Python, Pedregosa et al., JMLR 12, 2011."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, labels=None, average="macro", sample_weight=None):
        score = f1_score(
            references, predictions, labels=labels, average=average, sample_weight=sample_weight, zero_division=0
        )
        return {"f1": score.tolist() if getattr(score, "size", 1) > 1 else float(score)}
