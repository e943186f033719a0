"""Expected accuracy of a head on a new encoder, before any label of that encoder is seen.

At attach time the same inputs (the head's anchors and alignment set) are embedded by both encoders. The head's
predictions on the training encoder's embeddings are compared with its predictions on the new encoder's embeddings
of the same inputs, *cross-fitted*: the translation new -> training space is refitted on k-1 folds and scored on
the held-out fold, so no point is scored by a map fitted on it. ``kept`` is the share of agreeing predictions.

The expected accuracy weighs each changed prediction by what it costs, from both sides. The head's validation
accuracy ``a`` (stored by ``save_head(metrics={"accuracy": ...})``) sets a temperature T at which the head's mean top
softmax probability on the training side equals ``a``. With the logits of both sides divided by T:

- the *calibrated agreement* ``c = mean_i q_i[prediction on the new side]`` (q: the training side's probabilities)
  is ``a`` when every prediction is kept, drops little when only borderline points change and by a whole point
  per confident point changed: what the new encoder loses, seen from the training side;
- the *calibrated confidence* ``d = mean_i max p_i`` (p: the new side's probabilities at the same T) is what the
  new side would claim with the training side's calibration: under ``a`` for a noisier or unrelated encoder, over
  it for a stronger one, which no agreement can see;
- the raw *difference of confidences* ``g`` (the two sides' mean top softmax probability at T = 1, training minus
  new side). When the anchors are among the head's training rows, its raw confidence there is that of memorised
  rows, and part of the new side's fall in confidence (through ``d``) is only the loss of that memory, not a loss of
  accuracy on new inputs; ``g`` gives that part back. Then::

    expected = a - w_c * (a - c) - w_d * (a - d) + w_g * g

The weights and the residual spread depend on whether the head trained on its anchors and alignment set
(``anchors_in_training`` in ``bridge_head_config.json``, written by ``save_head(anchors_in_training=...)``, the
train CLI and the stitch runner): ``CONSTANTS[True]`` / ``CONSTANTS[False]``, and for a head that does not say
(``None``: older heads, a user's loop that did not pass it) constants fitted on both kinds of heads together. All
are fitted on ``benchmarks/accuracy_estimate.py`` (docs/estimate.md). The interval adds a bootstrap of the
estimate's mean over the scored points to that spread. Other signals are computed alongside for the benchmark
(kept, ATC, agreement-on-the-line over the head's two components).

The API takes embeddings, a head and a number: it has no parameter through which a label could reach it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..modeling.head import RelativeProductHead
    from ..modeling.modeling_bridge import BridgePreTrainedModel
    from .format import BridgeHead


@dataclass(frozen=True)
class Constants:
    """The weights of ``expected = a - agreement * (a - c) - confidence * (a - d) + confidence_gap * g`` and the RMS
    residual around the measured accuracy (the interval's spread beyond the bootstrap)."""

    agreement: float
    confidence: float
    confidence_gap: float
    residual_sd: float


# Least squares over the paired triples of benchmarks/accuracy_estimate.py's three first tasks (MNIST left out as a
# check), one run per kind of head (docs/estimate.md), keyed by ``anchors_in_training``: False, heads whose anchors
# and alignment set are new to them; True, heads that trained on them (the quickstart's, `hf-bridges train`'s and
# the stitch runner's); None, a head that does not say: fitted on both runs' triples together.
CONSTANTS: dict[bool | None, Constants] = {
    False: Constants(agreement=0.61, confidence=0.60, confidence_gap=0.0, residual_sd=0.029),
    True: Constants(agreement=0.695, confidence=0.92, confidence_gap=0.95, residual_sd=0.025),
    None: Constants(agreement=0.615, confidence=1.017, confidence_gap=0.83, residual_sd=0.028),
}
Z = 1.96
FOLDS = 10
BOOTSTRAP = 200


@dataclass
class AccuracyEstimate:
    """Label-free expectation of the head's accuracy on a new encoder (``expected`` is None without a stored
    source accuracy; ``kept`` is always there: the share of the head's predictions the new encoder keeps)."""

    kept: float
    kept_low: float
    kept_high: float
    points: int
    source_accuracy: float | None = None
    expected: float | None = None
    low: float | None = None
    high: float | None = None
    anchors_in_training: bool | None = None  # the constants used: CONSTANTS[anchors_in_training]
    signals: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        """ "expected accuracy 0.93 (0.91–0.95) on this encoder; 0.97 on the training encoder"."""
        if self.expected is None:
            return (
                f"keeps {self.kept:.0%} ({self.kept_low:.0%}–{self.kept_high:.0%}) of the head's predictions on "
                "this encoder (no validation accuracy stored with the head: save it with "
                "save_head(metrics={'accuracy': ...}) to get an expected accuracy)"
            )
        return (
            f"expected accuracy {self.expected:.2f} ({self.low:.2f}–{self.high:.2f}) on this encoder; "
            f"{self.source_accuracy:.2f} on the training encoder (keeps {self.kept:.0%} of its predictions)"
        )

    def warning(self, tolerance: float = 0.05) -> str | None:
        """A warning when the estimate's upper end is more than ``tolerance`` under the source accuracy."""
        if self.expected is None:  # no source accuracy: the report prints the kept share, the CKA gate warns
            return None
        if self.high >= self.source_accuracy - tolerance:
            return None
        return (
            f"{self.line()}: expect to lose about {self.source_accuracy - self.expected:.0%} of accuracy "
            "(label-free estimate from cross-fitted anchor agreement)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _temperature(logits: torch.Tensor, confidence: float, low: float = 1e-2, high: float = 1e2) -> float:
    """The temperature T at which the mean top softmax probability of ``logits / T`` equals ``confidence``
    (bisection in log T): the source side's probabilities calibrated to the head's stored accuracy."""
    logits = logits.double()
    for _ in range(40):
        mid = math.sqrt(low * high)
        if float((logits / mid).softmax(-1).max(-1).values.mean()) > confidence:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def _refitted_map(new: torch.Tensor, target: torch.Tensor, train: torch.Tensor, translation: str, alpha=None):
    """The translation fitted on the ``train`` rows only, rewritten in the head's standardisation (by all anchors),
    so that ``head(x, anchors)`` applies exactly the fold's map. ``alpha``: the attach's ridge strength (affine)."""
    from ..heads.translation import fit_affine, fit_translation

    if translation == "affine" and alpha is not None:
        fitted = fit_affine(new[train].double(), target[train].double(), alpha=float(alpha))
    else:
        fitted = fit_translation(new[train].double(), target[train].double(), translation)
    m_tr, s_tr = fitted.source_mean.double(), fitted.source_std.double()
    a = new.double()
    m, s = a.mean(0), a.std(0).clamp_min(1e-6)
    weight = (s / s_tr).unsqueeze(1) * fitted.weight.double()
    bias = fitted.bias.double() + ((m - m_tr) / s_tr) @ fitted.weight.double()
    return weight.float(), bias.float()


def _component_predictions(head, embeddings, anchors, weights) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Predictions of the relative-only and the aligned-only component (None for a head without both)."""
    if not getattr(head, "aligned", False) or head.classifier is None:
        return None
    n = len(head.projection_names)
    base = list(weights[:n]) if weights is not None else [1.0] * n
    if sum(base) <= 0:
        return None
    relative = _logits(head, embeddings, anchors, [*base, 0.0]).argmax(-1)
    aligned = _logits(head, embeddings, anchors, [0.0] * n + [1.0]).argmax(-1)
    return relative, aligned


def _probit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.sqrt(2) * float(torch.special.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)))


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@dataclass
class AgreementPoints:
    """The per-point evidence of an estimate: the head's logits on the training encoder's embeddings of the
    anchors (+ alignment set) and its cross-fitted logits on the new encoder's embeddings of the same inputs (each
    fold scored by a map fitted without it), plus each component's predictions (None for a head without two)."""

    source_logits: torch.Tensor
    new_logits: torch.Tensor
    source_components: tuple[torch.Tensor, torch.Tensor] | None = None
    new_components: tuple[torch.Tensor, torch.Tensor] | None = None


def _logits(head, embeddings: torch.Tensor, anchors: torch.Tensor, weights) -> torch.Tensor:
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    return head(embeddings.float(), anchors.float(), w).double()


@torch.no_grad()
def agreement_points(
    head: RelativeProductHead,
    reference_embeddings: torch.Tensor,
    new_embeddings: torch.Tensor,
    *,
    reference_alignment: tuple[torch.Tensor, torch.Tensor] | None = None,
    subspace_weights: Sequence[float] | None = None,
    translation: str = "auto",
    alpha: float | None = None,
    folds: int = FOLDS,
    seed: int = 0,
) -> AgreementPoints:
    """The head's logits on both sides of the same inputs, cross-fitted (arguments as :func:`estimate_accuracy`)."""
    if head.classifier is None:
        raise ValueError("an accuracy estimate needs a head with a classifier (this one is a representation head)")
    ref, new = reference_embeddings.detach().float().cpu(), new_embeddings.detach().float().cpu()
    if ref.shape[0] != new.shape[0]:
        raise ValueError(f"the two encoders embedded different inputs ({ref.shape[0]} vs {new.shape[0]} rows)")
    n = ref.shape[0]
    was_training = head.training
    head.eval()
    try:
        attached = copy.deepcopy(head).cpu().eval()
        reference = copy.deepcopy(head).cpu().eval()
        if getattr(reference, "aligned", False):
            if reference_alignment is None:
                reference.reset_alignment(ref.shape[1])
            else:
                reference.set_alignment(*reference_alignment)
                reference.set_relative_space(None)  # as align_head reads the reference
        weights = list(subspace_weights) if subspace_weights is not None else None
        source_logits = _logits(reference, ref, ref, weights)
        source_components = _component_predictions(reference, ref, ref, weights)
        identical = new.shape == ref.shape and torch.allclose(new, ref, rtol=2e-3, atol=2e-3)
        if identical:  # the training encoder itself (its stored anchors are float16): nothing changes
            return AgreementPoints(source_logits, source_logits.clone(), source_components, source_components)
        if not getattr(attached, "aligned", False):  # a relative head: nothing is fitted on the anchors
            return AgreementPoints(source_logits, _logits(attached, new, new, weights))
        new_logits = torch.empty_like(source_logits)
        parts = [torch.empty(n, dtype=torch.long), torch.empty(n, dtype=torch.long)]
        target = reference.aligned_inputs(ref, ref).double()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for fold in order.chunk(max(2, min(folds, n // 2))):
            train = torch.ones(n, dtype=torch.bool)
            train[fold] = False
            attached.set_alignment(*_refitted_map(new, target, train, translation, alpha))
            new_logits[fold] = _logits(attached, new[fold], new, weights)
            fold_parts = _component_predictions(attached, new[fold], new, weights)
            if fold_parts is not None:
                parts[0][fold], parts[1][fold] = fold_parts
        new_components = tuple(parts) if source_components is not None else None
        return AgreementPoints(source_logits, new_logits, source_components, new_components)
    finally:
        head.train(was_training)


@torch.no_grad()
def estimate_accuracy(
    head: RelativeProductHead,
    reference_embeddings: torch.Tensor,
    new_embeddings: torch.Tensor,
    *,
    source_accuracy: float | None = None,
    reference_alignment: tuple[torch.Tensor, torch.Tensor] | None = None,
    subspace_weights: Sequence[float] | None = None,
    translation: str = "auto",
    alpha: float | None = None,
    folds: int = FOLDS,
    seed: int = 0,
    anchors_in_training: bool | None = None,
) -> AccuracyEstimate:
    """Estimate the accuracy of ``head`` (attached to the new encoder: its map and relative space set) there.

    ``reference_embeddings`` / ``new_embeddings``: the training and the new encoder's embeddings of the head's
    anchors (+ alignment set), same rows, same order. ``source_accuracy``: the head's validation accuracy on its
    training encoder. ``reference_alignment``: the map a stitched head was saved with (None: the training encoder).
    ``translation`` / ``alpha``: the attach's map kind and ridge strength, refitted per fold.
    ``anchors_in_training``: whether the head trained on those inputs (None: unknown), which picks the constants.
    """
    if source_accuracy is not None and not 0.0 <= float(source_accuracy) <= 1.0:
        raise ValueError(f"source_accuracy must be in [0, 1], got {source_accuracy!r}")
    points = agreement_points(
        head,
        reference_embeddings,
        new_embeddings,
        reference_alignment=reference_alignment,
        subspace_weights=subspace_weights,
        translation=translation,
        alpha=alpha,
        folds=folds,
        seed=seed,
    )
    return summarise(points, source_accuracy, seed=seed, anchors_in_training=anchors_in_training)


def summarise(
    points: AgreementPoints,
    source_accuracy: float | None = None,
    seed: int = 0,
    constants: Constants | None = None,
    anchors_in_training: bool | None = None,
) -> AccuracyEstimate:
    """The estimate (and the other estimators' signals) from the per-point evidence; ``constants``: by default
    ``CONSTANTS[anchors_in_training]`` (the benchmark refits them without the task it scores)."""
    if anchors_in_training not in CONSTANTS:
        raise ValueError(f"anchors_in_training must be True, False or None, got {anchors_in_training!r}")
    constants = constants or CONSTANTS[anchors_in_training]
    p_src, p_new = points.source_logits.softmax(-1), points.new_logits.softmax(-1)
    n = p_src.shape[0]
    agree = (p_src.argmax(-1) == p_new.argmax(-1)).double()
    kept = float(agree.mean())
    draws = torch.randint(n, (BOOTSTRAP, n), generator=torch.Generator().manual_seed(seed + 1))
    boot = agree[draws].mean(1)
    signals = {
        "kept": kept,
        "kept_sd": float(boot.std()),
        "confidence_source": float(p_src.max(-1).values.mean()),
        "confidence_new": float(p_new.max(-1).values.mean()),
    }
    signals["doc"] = signals["confidence_source"] - signals["confidence_new"]
    if points.source_components is not None and points.new_components is not None:
        # agreement of the head's two components (relative only vs aligned only), on each side
        source, new = points.source_components, points.new_components
        signals["components_source"] = float((source[0] == source[1]).double().mean())
        signals["components_new"] = float((new[0] == new[1]).double().mean())
    estimate = AccuracyEstimate(
        kept=kept,
        kept_low=max(0.0, kept - Z * signals["kept_sd"]),
        kept_high=min(1.0, kept + Z * signals["kept_sd"]),
        points=n,
        anchors_in_training=anchors_in_training,
        signals=signals,
    )
    if source_accuracy is None:
        return estimate
    a = float(source_accuracy)
    conf_src, conf_new = p_src.max(-1).values, p_new.max(-1).values
    threshold = float(torch.quantile(conf_src, min(max(1.0 - a, 0.0), 1.0)))
    signals["atc"] = float((conf_new > threshold).double().mean()) - float((conf_src > threshold).double().mean()) + a
    signals["doc_estimate"] = a - signals["doc"]
    if "components_new" in signals:
        signals["aline"] = _phi(_probit(a) + _probit(signals["components_new"]) - _probit(signals["components_source"]))
    # both sides' logits at the training side's calibrated temperature; per point, the training side's probability
    # of the class the new side predicts (a changed borderline point costs little, a confident one a whole point)
    # and the new side's top probability (its calibrated claim)
    temperature = _temperature(points.source_logits, a)
    q = (points.source_logits / temperature).softmax(-1)
    agreement = q.gather(1, p_new.argmax(-1, keepdim=True)).squeeze(1)
    confidence = (points.new_logits / temperature).softmax(-1).max(-1).values
    signals["calibrated_agreement"] = float(agreement.mean())
    signals["calibrated_confidence"] = float(confidence.mean())
    gap = conf_src - conf_new  # the raw difference of confidences, per point (its mean: signals["doc"])
    # the estimate is a linear function of the three means: its bootstrap spread is that of the combined point
    combined = constants.agreement * agreement + constants.confidence * confidence + constants.confidence_gap * gap
    spread = float(combined[draws].mean(1).std())
    expected, low, high = expected_accuracy(
        a, signals["calibrated_agreement"], signals["calibrated_confidence"], signals["doc"], spread, constants
    )
    estimate.source_accuracy, estimate.expected, estimate.low, estimate.high = a, expected, low, high
    return estimate


def expected_accuracy(
    source_accuracy: float,
    calibrated_agreement: float,
    calibrated_confidence: float,
    confidence_gap: float = 0.0,
    spread: float = 0.0,
    constants: Constants = CONSTANTS[None],
) -> tuple[float, float, float]:
    """(expected, low, high): ``a - w_c * (a - c) - w_d * (a - d) + w_g * g`` with a ``Z``-sigma interval
    (``spread``: the bootstrap sd of the estimate's mean over the scored points, plus the benchmark's residual
    spread), in [0, 1]."""
    a, k = float(source_accuracy), constants
    expected = (
        a
        - k.agreement * (a - float(calibrated_agreement))
        - k.confidence * (a - float(calibrated_confidence))
        + k.confidence_gap * float(confidence_gap)
    )
    half = Z * math.sqrt(spread**2 + k.residual_sd**2)
    clip = lambda v: min(max(v, 0.0), 1.0)
    return clip(expected), clip(expected - half), clip(expected + half)


def stored_accuracy(config: dict, source: str | None = None) -> float | None:
    """The head's validation accuracy on its training encoder (``validation_accuracy``, written by
    ``save_head(metrics={"accuracy": ...})``); None for a head saved without it."""
    value = config.get("validation_accuracy")
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        from .files import HeadFormatError

        raise HeadFormatError(
            f"{source or 'head'}: field 'validation_accuracy' must be a number in [0, 1], got {value!r}; fix the "
            "field or save the head again with save_head(metrics={'accuracy': ...})"
        )
    return float(value)


def stored_anchors_in_training(config: dict, source: str | None = None) -> bool | None:
    """Whether the head trained on its anchors and alignment set (``anchors_in_training``, written by
    ``save_head(anchors_in_training=...)``, the train CLI and the stitch runner); None: the head does not say."""
    value = config.get("anchors_in_training")
    if value is None or isinstance(value, bool):
        return value
    from .files import HeadFormatError

    raise HeadFormatError(
        f"{source or 'head'}: field 'anchors_in_training' must be true, false or null, got {value!r} "
        f"({type(value).__name__}); fix the field or save the head again with save_head(anchors_in_training=...)"
    )


def estimate_for_attach(bridge: BridgePreTrainedModel, bundle: BridgeHead) -> AccuracyEstimate | None:
    """The estimate of an attach (``from_encoder(encoder, head=...)``): the head as attached, the training
    encoder's stored anchor embeddings and the new encoder's; None for a representation head."""
    head = bridge.head
    if head.classifier is None:
        return None
    state = bundle.state_dict
    reference_map = (state["aligned_weight"], state["aligned_bias"]) if "aligned_weight" in state else None
    alignment = getattr(bridge.config.head, "alignment", None) or {}
    kind = alignment.get("map")
    return estimate_accuracy(
        head,
        bundle.anchor_embeddings,
        bridge.anchor_embeddings,
        source_accuracy=stored_accuracy(bundle.config, bundle.source),
        anchors_in_training=stored_anchors_in_training(bundle.config, bundle.source),
        reference_alignment=reference_map if getattr(head, "aligned", False) else None,
        subspace_weights=bridge.config.subspace_weights,
        translation=kind if kind in ("orthogonal", "affine") else "auto",
        alpha=alignment.get("alpha") if kind == "affine" else None,
    )
