"""Read a sentence-transformers model's settings (pooling, ``Normalize``, ``max_seq_length``, prompts) without the library.

Most Hub text encoders are sentence-transformers models: their embedding is not "mean of ``AutoModel``" but what
``modules.json`` says (a ``Pooling`` mode, maybe a ``Normalize`` step), truncated at ``max_seq_length``, with named
prompts. A bridge that ignores this silently builds a different space. Part of the remote-code set: only json/os/
huggingface_hub imports; ``sentence-transformers`` stays optional and is touched only through a ``SentenceTransformer``
object the caller passes (duck-typed, never imported).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..modeling.registry import ConfigError

# sentence-transformers pooling mode (``pooling_mode`` string, or the legacy ``pooling_mode_*`` booleans)
# -> hf_bridges pooling name (modeling/head.py)
ST_POOLING_TO_BRIDGE = {
    "cls": "cls",
    "mean": "mean",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
    "weightedmean": "weightedmean",
    "lasttoken": "lasttoken",
}
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
_PIPELINE = "Transformer -> Pooling [-> Normalize]"


class UnsupportedSentenceTransformer(ConfigError):
    """A sentence-transformers model whose modules a bridge cannot reproduce (Dense, concatenated poolings...)."""


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _module_kind(type_ref: str) -> str:
    """``sentence_transformers.models.Pooling`` or (ST >= 5) ``sentence_transformers.<...>.pooling.Pooling`` ->
    ``Pooling``; a custom class keeps its full reference (and is refused)."""
    return type_ref.rsplit(".", 1)[-1] if type_ref.startswith("sentence_transformers.") else type_ref


def _pooling_mode(config: dict, where: str) -> tuple[str, bool]:
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)]
        mode = modes or ["mean"]
    if isinstance(mode, (list, tuple)):
        if len(mode) != 1:
            raise UnsupportedSentenceTransformer(
                f"{where}: pooling modes {list(mode)} are concatenated by sentence-transformers; a bridge supports "
                f"exactly one of {sorted(ST_POOLING_TO_BRIDGE)}"
            )
        mode = mode[0]
    if mode not in ST_POOLING_TO_BRIDGE:
        raise UnsupportedSentenceTransformer(
            f"{where}: pooling mode {mode!r} is not supported; supported: {sorted(ST_POOLING_TO_BRIDGE)}"
        )
    return mode, bool(config.get("include_prompt", True))


def _check_modules(kinds: list, paths: list, where: str) -> None:
    bad = [f"{k} ({p!r})" for k, p in zip(kinds, paths) if k not in _SUPPORTED_MODULES]
    if bad:
        raise UnsupportedSentenceTransformer(
            f"{where}: module(s) {', '.join(bad)} cannot be reproduced by a bridge; supported pipelines: {_PIPELINE} "
            f"(pooling modes {sorted(ST_POOLING_TO_BRIDGE)}). Use the underlying transformers model with an explicit "
            "pooling instead"
        )
    if not kinds or kinds[0] != "Transformer" or kinds.count("Transformer") != 1:
        raise UnsupportedSentenceTransformer(
            f"{where}: expected one Transformer module first, got {kinds} ({_PIPELINE})"
        )
    if "Pooling" in kinds and kinds.index("Pooling") != 1:
        raise UnsupportedSentenceTransformer(f"{where}: Pooling must directly follow Transformer, got {kinds}")
    if "Normalize" in kinds and kinds.index("Normalize") != len(kinds) - 1:
        raise UnsupportedSentenceTransformer(f"{where}: Normalize must be the last module, got {kinds}")


def resolve_model_folder(name_or_path: str, revision: str | None = None) -> str | None:
    """The local folder holding ``modules.json``: the folder itself, the cached Hub snapshot (no network), or, when
    online, the JSON files only of a Hub repo. ``None`` when there is none (then it is no sentence-transformers model
    as far as a bridge can tell; the weights are loaded by transformers as usual)."""
    if os.path.isdir(name_or_path):
        return name_or_path
    from huggingface_hub import constants, snapshot_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name_or_path, "modules.json", revision=revision)
    except ValueError:  # not a valid repo id (e.g. a missing local path): transformers reports it when loading
        return None
    if isinstance(cached, str):
        return os.path.dirname(cached)
    if constants.HF_HUB_OFFLINE or cached is not None:  # offline, or the cache knows the file does not exist
        return None
    try:
        return snapshot_download(name_or_path, revision=revision, allow_patterns=["*.json"])
    except Exception:  # not a Hub id, no network, gated: transformers will report that when loading the weights
        return None


def _settings(**values: Any) -> dict:
    prompts = dict(values.pop("prompts") or {})
    return {**values, "prompts": prompts}


def read_sentence_transformers_folder(folder: str, where: str | None = None) -> dict | None:
    """Settings of a local sentence-transformers folder, or ``None`` when it has no ``modules.json``."""
    modules = _read_json(os.path.join(folder, "modules.json"))
    if modules is None:
        return None
    where = where or f"sentence-transformers model {folder!r}"
    kinds = [_module_kind(m.get("type", "")) for m in modules]
    _check_modules(kinds, [m.get("path") or m.get("name") for m in modules], where)
    by_kind = dict(zip(kinds, modules))
    subfolder = by_kind["Transformer"].get("path", "") or ""
    transformer_dir = os.path.join(folder, subfolder)
    mode, include_prompt = "mean", True  # no Pooling module: sentence-transformers adds mean pooling
    if "Pooling" in by_kind:
        pooling_config = _read_json(os.path.join(folder, by_kind["Pooling"].get("path", ""), "config.json")) or {}
        mode, include_prompt = _pooling_mode(pooling_config, where)
    sbert = _read_json(os.path.join(transformer_dir, "sentence_bert_config.json")) or {}
    st_config = _read_json(os.path.join(folder, "config_sentence_transformers.json")) or {}
    max_seq_length = sbert.get("max_seq_length")
    if max_seq_length is None:  # sentence-transformers >= 6 keeps it as the tokenizer's model_max_length
        length = (_read_json(os.path.join(transformer_dir, "tokenizer_config.json")) or {}).get("model_max_length")
        max_seq_length = int(length) if isinstance(length, (int, float)) and length < 1e9 else None
    return _settings(
        pooling=ST_POOLING_TO_BRIDGE[mode],
        normalize="Normalize" in kinds,
        max_seq_length=max_seq_length,
        prompts=st_config.get("prompts"),
        default_prompt_name=st_config.get("default_prompt_name"),
        include_prompt=include_prompt,
        do_lower_case=bool(sbert.get("do_lower_case", False)),
        subfolder=subfolder,
    )


def is_sentence_transformer(obj: Any) -> bool:
    """A loaded ``SentenceTransformer`` (an ``nn.Sequential`` of sentence-transformers modules), duck-typed."""
    return (
        hasattr(obj, "encode")
        and hasattr(obj, "_modules")
        and any(type(m).__module__.startswith("sentence_transformers") for m in getattr(obj, "_modules", {}).values())
    )


def _from_loaded(model: Any) -> dict:
    mods = list(model._modules.values())
    kinds = [_module_kind(f"{type(m).__module__}.{type(m).__name__}") for m in mods]
    where = f"SentenceTransformer ({type(model).__name__})"
    _check_modules(kinds, list(model._modules), where)
    pooling = mods[1] if len(mods) > 1 and kinds[1] == "Pooling" else None
    mode, include_prompt = "mean", True
    if pooling is not None:
        mode = getattr(pooling, "pooling_mode", None)
        if mode is None and hasattr(pooling, "get_pooling_mode_str"):  # sentence-transformers < 5
            mode = pooling.get_pooling_mode_str()
        mode, include_prompt = _pooling_mode(
            {"pooling_mode": mode, "include_prompt": getattr(pooling, "include_prompt", True)}, where
        )
    transformer = mods[0]
    hf_model = getattr(transformer, "auto_model", None) or getattr(transformer, "model", None)
    return _settings(
        pooling=ST_POOLING_TO_BRIDGE[mode],
        normalize="Normalize" in kinds,
        max_seq_length=getattr(model, "max_seq_length", None),
        prompts=getattr(model, "prompts", None),
        default_prompt_name=getattr(model, "default_prompt_name", None),
        include_prompt=include_prompt,
        do_lower_case=bool(getattr(transformer, "do_lower_case", False)),
        subfolder="",
        model=hf_model,
        tokenizer=getattr(transformer, "tokenizer", None) or getattr(model, "tokenizer", None),
    )


def st_encoder_settings(encoder: Any, revision: str | None = None) -> dict:
    """What a sentence-transformers model says about its embedding, as bridge settings; ``{}`` for anything else.

    ``encoder``: a folder, a Hub id (cached ones need no network) or a loaded ``SentenceTransformer``. Keys:
    ``pooling`` (an hf_bridges pooling name), ``normalize`` (a ``Normalize`` module ends the pipeline),
    ``max_seq_length`` (``None`` if unset), ``prompts`` (name -> text), ``default_prompt_name``, ``include_prompt``,
    ``do_lower_case``, ``subfolder`` (of the transformers weights); plus ``model`` / ``tokenizer`` for a loaded object.
    Raises :class:`UnsupportedSentenceTransformer` naming a module or mode a bridge cannot reproduce.
    """
    if is_sentence_transformer(encoder):
        return _from_loaded(encoder)
    if not isinstance(encoder, (str, os.PathLike)):
        return {}  # a transformers model, a plain module: nothing to read
    folder = resolve_model_folder(os.fspath(encoder), revision)
    if folder is None:
        return {}
    return read_sentence_transformers_folder(folder, f"sentence-transformers model {os.fspath(encoder)!r}") or {}


def resolve_prompt(settings: dict, prefix: str | None, where: str | None = None) -> str:
    """The text to prepend: a prompt *name* of the model (``"query"``) resolves to its prompt, any other string is
    used as is, and ``None`` means the model's default prompt (if any).

    A model whose Pooling has ``include_prompt=false`` leaves the prompt's tokens out of the pooled embedding, which
    a bridge does not reproduce: a non-empty prompt for it raises :class:`UnsupportedSentenceTransformer` (``where``
    names the model in the message)."""
    prompts = settings.get("prompts") or {}
    if prefix is None:
        name = settings.get("default_prompt_name")
        text = prompts.get(name, "") if name else ""
    else:
        text = prompts.get(prefix, prefix)
    if text and not settings.get("include_prompt", True):
        raise UnsupportedSentenceTransformer(
            f"{where or 'this sentence-transformers model'}: its Pooling has include_prompt=false (the prompt's tokens "
            f"are left out of the pooling), which a bridge does not reproduce, so the prompt {text!r} cannot be used; "
            "pass prefix='' (no prompt) or use the model through sentence-transformers and pass features"
        )
    return text
