"""``pipeline("text-classification" | "feature-extraction", model=<bridge object>)`` without ``tokenizer=``.

transformers (5.25) guesses a pipeline's tokenizer only from a model given as a string (``model_name = model if
isinstance(model, str) else None``, then ``AutoTokenizer.from_pretrained(model_name)``); for a model object it
raises "Impossible to guess which tokenizer to use" before the pipeline class sees the model. A bridge object holds
its tokenizer, so these two tasks get pipeline subclasses, registered in transformers' ``PIPELINE_REGISTRY``, that
try the usual guess softly (``_load_tokenizer = None``, as transformers' own optional components do) and then take
the model's tokenizer. For any other model they behave as before: no guess possible -> the loader's own error.

``transformers.pipelines`` takes seconds to import, so importing a bridge does not import it: the registration
runs when something else imports it (a post-import hook on that one module name), or at once if it already is.
Only torch/transformers and the standard library: shipped as remote code next to the weights.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
from typing import Any

_MODULE = "transformers.pipelines"
_TASKS = {
    "text-classification": "TextClassificationPipeline",
    "feature-extraction": "FeatureExtractionPipeline",
}


def _model_tokenizer(model: Any) -> Any:
    """The bridge's own tokenizer; for other models the tokenizer of ``model.name_or_path``, loaded so that a
    failure raises the loader's error as transformers would have."""
    get = getattr(model, "_get_tokenizer", None)
    if callable(get):
        tokenizer = get()
        if tokenizer is not None:
            return tokenizer
    elif getattr(model, "name_or_path", None):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model.name_or_path)
    raise ValueError(
        "Impossible to guess which tokenizer to use. Please provide a PreTrainedTokenizer class or a path/identifier "
        "to a pretrained tokenizer (pipeline(..., tokenizer=...))."
    )


def _with_model_tokenizer(base: type) -> type:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        model = kwargs["model"] if "model" in kwargs else args[0]
        if len(args) < 2 and kwargs.get("tokenizer") is None and kwargs.get("processor") is None:
            kwargs["tokenizer"] = _model_tokenizer(model)
        base.__init__(self, *args, **kwargs)

    return type(
        base.__name__,
        (base,),
        {
            "__init__": __init__,
            "__module__": __name__,
            "__doc__": f"{base.__doc__ or ''}\n\nA model object's own tokenizer is used when none is passed.",
            "_load_tokenizer": None,  # the guess from a model string is still tried; a failure reaches __init__
            "_hf_bridges_pipeline": True,
        },
    )


def _register(pipelines: Any) -> None:
    """Swap the stock implementation of each task for its subclass (never someone else's registration)."""
    registry = getattr(pipelines, "PIPELINE_REGISTRY", None)
    if registry is None:
        return
    for task, class_name in _TASKS.items():
        entry = registry.supported_tasks.get(task)
        stock = getattr(pipelines, class_name, None)
        if entry is None or stock is None:
            continue
        impl = entry.get("impl")
        if getattr(impl, "_hf_bridges_pipeline", False):
            continue  # already registered (the package and a remote-code copy both import this file)
        if impl is not stock and impl != f"{stock.__module__}.{class_name}":
            continue  # a user's own pipeline for the task: left alone
        entry["impl"] = _with_model_tokenizer(stock)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Runs ``_register`` right after ``transformers.pipelines`` is first executed, then steps aside."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != _MODULE:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_register(module: Any) -> None:
            exec_module(module)
            with contextlib.suppress(Exception):  # never break an import: without it, pass tokenizer=...
                _register(module)

        loader.exec_module = exec_and_register
        return spec


def register_bridge_pipelines() -> None:
    """Register now if ``transformers.pipelines`` is imported, else when it is."""
    module = sys.modules.get(_MODULE)
    if module is not None:
        _register(module)
    elif not any(isinstance(finder, _RegisterOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())
