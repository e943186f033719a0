"""What callers hand the builders: keyword checks, named heads, class names, alignment inputs, anchor checks."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..logging import user_stacklevel
from ..modeling.configuration_bridge import BridgeConfig, HeadConfig
from ..modeling.registry import ConfigError, InputError
from .methods import METHODS


def given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments the caller set (None: leave the config's default, or ``head_config``'s value)."""
    return {key: value for key, value in kwargs.items() if value is not None}


# Config fields from_encoder sets itself (or takes under another name: head_config=, prefix=), so not as **kwargs.
_RESERVED = frozenset(
    {
        "self",
        "kwargs",
        "encoder",
        "encoder_revision",
        "anchors",
        "anchor_seq_length",
        "num_anchors",
        "bridge_format_version",
        "head",
        "input_prefix",
        "head_method",
        "transformers_version",
        "architectures",
    }
)


def check_config_kwargs(
    kwargs: dict[str, Any], where: str, named: Sequence[str] = (), allowed: Sequence[str] = ()
) -> None:
    """Refuse keyword arguments that are no ``BridgeConfig`` field (a typo would otherwise land in the config and
    be silently ignored); the error names them and the closest valid name."""
    fields = {f.name for f in dataclasses.fields(BridgeConfig)} | set(HeadConfig.field_names()) | {"num_labels"}
    valid = (fields - _RESERVED) | set(allowed)
    unknown = [key for key in kwargs if key not in valid]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(valid | set(named)), n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"{where}() got unexpected keyword argument(s) {', '.join(hints)}; valid: its own arguments "
            f"{sorted(named)} and the BridgeConfig fields {sorted(valid)}"
        )


def resolve_head(
    where: str,
    method: str | None,
    head_config: Any,
    projections: Sequence[str] | None,
    aggregation: str | None,
    config_kwargs: dict[str, Any],
    warn: bool = True,
) -> tuple[Any, Sequence[str] | None, str | None]:
    """``(head_config, projections, aggregation)`` for ``BridgeConfig``, with ``config_kwargs['head_method']`` set.

    ``method`` (or ``head_config`` given as a name, e.g. ``"paper"``): the named head (``HeadConfig.from_method``),
    with ``head_config`` (a dict) and any flat head field
    (``projections=``, ``classifier_dropout=``, ...) applied on top of it. Without ``method`` nothing changes, but
    ``projections`` / ``aggregation`` alone (no ``head_config``) warn: they are applied on top of the default head,
    whose aligned component and other settings stay (docs/method.md#named-heads says why)."""
    if isinstance(head_config, str):
        if method is not None:
            raise TypeError(
                f"{where}: head_config={head_config!r} names a head and so does method={method!r}; pass one"
            )
        method, head_config = head_config, None
    if method is None:
        flat = given(projections=projections, aggregation=aggregation)
        if flat and head_config is None and warn:
            spelled = ", ".join(f"{key}={value!r}" for key, value in flat.items())
            warnings.warn(
                f"{where}: {spelled} without method= or head_config= builds the DEFAULT head with these fields on "
                "top (aligned component, abs_transform='standard', combine='sum', component_dropout=0.3), not the "
                "relative-only head the paper and the stitch benchmark name by these fields. For exactly a named "
                f"head pass method=... (one of {sorted(METHODS)}, e.g. method='paper'); to keep the default head's "
                "other settings say so with head_config={} (or any fields), which also silences this warning",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return head_config, projections, aggregation
    if isinstance(head_config, HeadConfig) or (head_config is not None and not isinstance(head_config, dict)):
        raise TypeError(f"{where}: pass method= (a named head) or a full head_config=HeadConfig(...), not both")
    flat = {key: config_kwargs.pop(key) for key in [k for k in config_kwargs if k in HeadConfig.field_names()]}
    overrides = {**(head_config or {}), **flat, **given(projections=projections, aggregation=aggregation)}
    config_kwargs["head_method"] = method
    return HeadConfig.from_method(method, **overrides), None, None


FROM_ENCODER_ARGS = (
    "encoder",
    "anchors",
    "head",
    "tokenizer",
    "revision",
    "anchor_labels",
    "pooling",
    "max_seq_length",
    "projections",
    "aggregation",
    "head_config",
    "method",
    "prefix",
    "encoder_kwargs",
    "normalize_embeddings",
    "labels",
    "embed_anchors",
    "alignment_inputs",
)


def attach_arguments(attach_head: Any) -> tuple[str, ...]:
    """The keyword arguments ``attach_head`` takes itself (``head_revision``, ``token``, ``subspace_selection``...)."""
    params = inspect.signature(attach_head).parameters
    return tuple(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def label_kwargs(labels: Any, config_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``num_labels`` / ``id2label`` / ``label2id`` from ``labels``: a ``datasets.ClassLabel`` (duck-typed: its
    ``names``), a list of names or an ``{id: name}`` mapping. ``{}`` for ``None``. Refuses a clash with an
    explicit ``num_labels`` / ``id2label``, so the names can never silently disagree with the classifier."""
    if labels is None:
        return {}
    names = getattr(labels, "names", None)
    if names is not None:
        id2label = dict(enumerate(str(n) for n in names))
    elif isinstance(labels, Mapping):
        id2label = {int(i): str(n) for i, n in labels.items()}
    elif isinstance(labels, (list, tuple)):
        id2label = dict(enumerate(str(n) for n in labels))
    else:
        raise TypeError(
            f"labels must be a datasets.ClassLabel, a list of names or an {{id: name}} dict, got "
            f"{type(labels).__name__}"
        )
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 1:
        raise ConfigError(f"labels must name the classes 0..n-1, got ids {sorted(id2label)}")
    given = config_kwargs.get("id2label")
    if given is not None and {int(i): str(n) for i, n in dict(given).items()} != id2label:
        raise ConfigError(f"labels={id2label} and id2label={dict(given)} disagree; pass one of them")
    if config_kwargs.get("num_labels") not in (None, len(id2label)):
        raise ConfigError(f"labels names {len(id2label)} classes but num_labels={config_kwargs['num_labels']}")
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}


def with_alignment(
    anchors: Any,
    anchor_labels: Sequence[int] | None,
    head_config: Any,
    alignment_inputs: Any,
    join: Callable[[Any, Any], Any] | None = None,
) -> tuple[Any, list | None, Any]:
    """Append an alignment set to the anchors: inputs stored and embedded like anchors, but only fitting the
    aligned map at attach time (``head_config.relative_anchors`` = the number of real anchors). ``join``: how
    anchors and extra inputs concatenate (default: as lists; ``torch.cat`` for tensors)."""
    if alignment_inputs is None:
        return anchors, anchor_labels, head_config
    if len(alignment_inputs) == 0:
        raise InputError("alignment_inputs is empty: pass more inputs of the task (no labels needed), or None")
    head_config = HeadConfig.from_dict(head_config, where="from_encoder(head_config=...)")
    head_config = head_config.replace(relative_anchors=len(anchors))  # raises when the head has no aligned map
    labels = None if anchor_labels is None else [*anchor_labels, *([None] * len(alignment_inputs))]
    joined = join(anchors, alignment_inputs) if join is not None else [*anchors, *alignment_inputs]
    return joined, labels, head_config


def warn_degenerate_anchors(
    anchors: Sequence,
    embeddings: torch.Tensor | None,
    where: str = "from_encoder",
    check_duplicates: bool = True,
) -> None:
    """Warn on duplicate anchor inputs (they add nothing) and on anchors the encoder embeds (almost) identically:
    every relative coordinate is then the same, so the logits no longer depend on the input.
    ``check_duplicates=False`` on attach: duplicates belong to the head, said once where it was built.
    ``embeddings=None`` (not embedded yet): duplicates only."""
    texts = [a for a in anchors if isinstance(a, (str, bytes))]  # other inputs (images, arrays): no reliable equality
    duplicates = len(texts) - len(set(texts)) if check_duplicates else 0
    if duplicates:
        seen: set = set()
        example = next(a for a in texts if a in seen or seen.add(a))
        warnings.warn(
            f"{where}: {duplicates} of the {len(anchors)} anchors are duplicates (e.g. {str(example)[:60]!r}); they "
            "add no information: pass distinct anchors",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    if embeddings is None:
        return
    emb = embeddings.detach().float()
    spread = (emb - emb.mean(0, keepdim=True)).norm(dim=1).max()
    if not torch.isfinite(spread) or spread <= 1e-6 * (emb.norm(dim=1).max() + 1e-12):
        warnings.warn(
            f"{where}: the encoder embeds all {len(anchors)} anchors (almost) identically (degenerate anchors, zero "
            "variance): every input gets the same relative representation and the same prediction. Pass distinct "
            "anchors, or check the tokenizer and pooling",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
