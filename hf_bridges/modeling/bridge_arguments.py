"""Keyword checking for ``from_encoder`` / ``from_module`` and the lazy hook into the installed package's head I/O.

Only relative imports of sibling files: shipped as remote code next to the weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from .configuration_bridge import BridgeConfig


def _given(**kwargs: Any) -> dict[str, Any]:
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


def check_config_kwargs(kwargs: dict[str, Any], where: str, named: Sequence[str] = (), allowed: Sequence[str] = ()):
    """Refuse keyword arguments that are no ``BridgeConfig`` field (a typo would otherwise land in the config and
    be silently ignored); the error names them and the closest valid name."""
    import difflib
    import inspect

    fields = set(inspect.signature(BridgeConfig.__init__).parameters)
    fields |= set(inspect.signature(PretrainedConfig.__init__).parameters) | {"num_labels"}
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
    import warnings

    from .head_config import HeadConfig

    if isinstance(head_config, str):
        if method is not None:
            raise TypeError(
                f"{where}: head_config={head_config!r} names a head and so does method={method!r}; pass one"
            )
        method, head_config = head_config, None
    if method is None:
        given = _given(projections=projections, aggregation=aggregation)
        if given and head_config is None and warn:
            spelled = ", ".join(f"{key}={value!r}" for key, value in given.items())
            warnings.warn(
                f"{where}: {spelled} without method= or head_config= builds the DEFAULT head with these fields on "
                "top (aligned component, abs_transform='standard', combine='sum', component_dropout=0.3), not the "
                "relative-only head the paper and the stitch benchmark name by these fields. For exactly a named "
                f"head pass method=... (one of {sorted(_methods())}, e.g. method='paper'); to keep the default head's "
                "other settings say so with head_config={} (or any fields), which also silences this warning",
                UserWarning,
                stacklevel=3,
            )
        return head_config, projections, aggregation
    if isinstance(head_config, HeadConfig) or (head_config is not None and not isinstance(head_config, dict)):
        raise TypeError(f"{where}: pass method= (a named head) or a full head_config=HeadConfig(...), not both")
    flat = {key: config_kwargs.pop(key) for key in [k for k in config_kwargs if k in HeadConfig.field_names()]}
    overrides = {**(head_config or {}), **flat, **_given(projections=projections, aggregation=aggregation)}
    config_kwargs["head_method"] = method
    return HeadConfig.from_method(method, **overrides), None, None


def _methods() -> tuple[str, ...]:
    from .head_config import METHODS

    return tuple(METHODS)


def _installed(module: str):
    """A module of the installed package (``heads.hub``, ``heads.compatibility``): head-only I/O, attach and the
    anchor-fitted maps live there, not in the remote-code files shipped next to the weights."""
    try:
        return importlib.import_module(f"hf_bridges.{module}")
    except ImportError as error:
        raise ImportError(
            f"head-only save/push/attach and attaching encoders need the hf_bridges package ({error}): "
            "pip install hf_bridges"
        ) from None


def _hub():
    """Head-only save/push/attach: ``hf_bridges.heads.hub``."""
    return _installed("heads.hub")


_FROM_ENCODER_ARGS = (
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


def _attach_arguments(hub: Any) -> tuple[str, ...]:
    """The keyword arguments ``attach_head`` takes itself (``head_revision``, ``token``, ``subspace_selection``...)."""
    import inspect

    params = inspect.signature(hub.attach_head).parameters
    return tuple(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
