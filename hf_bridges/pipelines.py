"""``pipeline("text-classification" | "feature-extraction", model=<bridge object>)`` without ``tokenizer=``.

transformers (5.25) guesses a pipeline's tokenizer only from a model given as a string (``model_name = model if
isinstance(model, str) else None``, then ``AutoTokenizer.from_pretrained(model_name)``); for a model object it
raises "Impossible to guess which tokenizer to use" before the pipeline class sees the model. A bridge object holds
its tokenizer, so these two tasks get pipeline subclasses, registered in transformers' ``PIPELINE_REGISTRY``, that
try the usual guess softly (``_load_tokenizer = None``, as transformers' own optional components do) and then take
the model's tokenizer. For any other model they behave as before: no guess possible -> the loader's own error.

``transformers.pipelines`` takes seconds to import, so ``import hf_bridges`` does not import it: the registration
runs when something else does (``hf_bridges._hooks``), or at once if it already is.
"""

from __future__ import annotations

from typing import Any

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
            continue  # already registered
        if impl is not stock and impl != f"{stock.__module__}.{class_name}":
            continue  # a user's own pipeline for the task: left alone
        entry["impl"] = _with_model_tokenizer(stock)


def register_bridge_pipelines(pipelines: Any = None) -> None:
    """Swap the stock pipeline of each task for its subclass (``pipelines``: the imported
    ``transformers.pipelines``; ``hf_bridges._hooks`` calls this when it is first imported)."""
    if pipelines is None:
        import transformers.pipelines as pipelines
    _register(pipelines)
