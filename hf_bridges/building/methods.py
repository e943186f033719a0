"""Named heads: one definition of ``paper``, ``default`` and the stitch benchmark's method rows, so a name means
one head in ``from_encoder(method=...)``, ``HeadConfig.from_method`` and the stitch configs."""

from __future__ import annotations

from typing import Any

from ..modeling.configuration_bridge import HeadConfig
from ..modeling.registry import ConfigError, UnknownNameError, did_you_mean

PAPER_PROJECTIONS = ["cosine", "euclidean", "l1", "linf"]


def method_head(
    kind: str = "relative",
    projections: Any = ("cosine",),
    aggregation: str = "concat",
    abs_transform: str = "none",
    subspace_dropout: float = 0.0,
    where: str = "method head",
    **shared: Any,
) -> HeadConfig:
    """The head of a method: one definition for the API (``HeadConfig.from_method``, ``from_encoder(method=...)``)
    and the stitch benchmark (``MethodSpec.head_config``), so a name means one head everywhere.

    ``relative``: relative subspaces only, as in the paper (no aligned component, one classifier, no component
    dropout): ``projections`` / ``aggregation`` / ``abs_transform`` / ``subspace_dropout`` as given, every other
    field HeadConfig's default. ``default``: ``HeadConfig()`` itself (what ``from_encoder`` builds with no head
    arguments). ``shared``: fields set on top (the benchmark's shared ``head:`` settings, a caller's overrides)."""
    if kind == "default":
        return HeadConfig.from_dict({**HeadConfig().to_dict(), **shared}, where=where)
    if kind != "relative":
        raise ConfigError(f"unknown head method kind {kind!r}; valid: ['default', 'relative']")
    base = {"aligned": False, "combine": "concat", "component_dropout": 0.0}
    method = {
        "projections": list(projections) if isinstance(projections, tuple) else projections,
        "aggregation": aggregation,
        "abs_transform": abs_transform,
        "subspace_dropout": subspace_dropout,
    }
    return HeadConfig.from_dict({**base, **method, **shared}, where=where)


# The named heads. The stitch configs' method rows carry these names (tests/test_journeys_model.py checks that every
# shipped row named here builds this head); ``paper`` is the paper's MLP+Sum product exactly (k->k maps), while the
# benchmark row ``product-mlp_sum`` uses the shared k->256 maps. Attach-time choices (``+select`` rows) are not
# heads: from_encoder(..., head=..., subspace_selection=...) applies them.
METHODS: dict[str, dict[str, Any]] = {
    "paper": {"projections": PAPER_PROJECTIONS, "aggregation": "mlp_sum", "aggregation_dim": None},
    "default": {"kind": "default"},
    "cosine": {"projections": ["cosine"]},
    "euclidean": {"projections": ["euclidean"]},
    "l1": {"projections": ["l1"]},
    "linf": {"projections": ["linf"]},
    "cosine+std": {"projections": ["cosine"], "abs_transform": "standard"},
    "cosine+whiten": {"projections": ["cosine"], "abs_transform": "whiten"},
    **{
        f"product-{aggregation}": {"projections": PAPER_PROJECTIONS, "aggregation": aggregation}
        for aggregation in ("concat", "mlp_sum", "sum", "self_attention", "weighted")
    },
}


def head_for_method(name: str, **overrides: Any) -> HeadConfig:
    """Exactly the head of the named method (:data:`METHODS`), then ``overrides`` (any fields) on top."""
    if not isinstance(name, str) or name not in METHODS:
        shown = name if isinstance(name, str) else repr(name)
        raise UnknownNameError(
            f"unknown head method {shown!r}{did_you_mean(str(name), METHODS)}; valid: {sorted(METHODS)}"
        )
    return method_head(**{**METHODS[name], **overrides})
