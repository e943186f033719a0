"""The building layer: what makes, attaches and writes bridges (and the text API over them), installed with the
package and never shipped next to the weights. The model classes (``hf_bridges.modeling``, the remote-code set)
reach it through these functions only, lazily, so an attach flows one way: attach -> build -> model -> alignment.
"""

from __future__ import annotations

from typing import Any


def from_encoder(cls: type, encoder: Any, anchors: Any = None, **kwargs: Any) -> Any:
    """``cls.from_encoder(...)``: a new head on ``encoder`` (text or images), or a trained one with ``head=``."""
    if cls.main_input_name == "pixel_values":
        from .vision import build_bridge
    else:
        from .text import build_bridge
    return build_bridge(cls, encoder, anchors, **kwargs)


def save_head(model: Any, save_directory: Any, **kwargs: Any) -> Any:
    from ..heads.hub import save_head as save

    return save(model, save_directory, **kwargs)


def push_head_to_hub(model: Any, repo_id: str, **kwargs: Any) -> Any:
    from ..heads.hub import push_head_to_hub as push

    return push(model, repo_id, **kwargs)


def stitch_anchor_embeddings(model: Any, embeddings: Any, **kwargs: Any) -> Any:
    from ..heads.compatibility import stitch_anchor_embeddings as stitch

    return stitch(model, embeddings, **kwargs)


def staged_save(model: Any, save: Any, save_directory: Any, args: tuple, kwargs: dict) -> Any:
    from .saving import staged_save as staged

    return staged(model, save, save_directory, args, kwargs)


def checked_load(load: Any, source: Any, args: tuple, kwargs: dict) -> Any:
    from .saving import checked_load as checked

    return checked(load, source, args, kwargs)


def write_model_card(model: Any, folder: Any, repo_id: str | None = None) -> None:
    from ..heads.cards import write_model_card as write

    write(model, folder, repo_id)


def encode(model: Any, sentences: Any, **kwargs: Any) -> Any:
    from .text_api import encode as run

    return run(model, sentences, **kwargs)


def predict(model: Any, inputs: Any, **kwargs: Any) -> Any:
    from .text_api import predict as run

    return run(model, inputs, **kwargs)


def predict_proba(model: Any, inputs: Any, **kwargs: Any) -> Any:
    from .text_api import predict_proba as run

    return run(model, inputs, **kwargs)


def preprocess(model: Any, images: Any) -> Any:
    from .vision import preprocess as run

    return run(model, images)


def watch_optimizer_steps() -> None:
    """Count fused optimizers' steps for the anchor refresh (``optimizer_steps``)."""
    from .optimizer_steps import watch_optimizer_steps as watch

    watch()
