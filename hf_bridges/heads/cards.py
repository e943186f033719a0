"""Model cards for heads and full models, rendered from the Jinja templates in ``model_cards/`` by ``ModelCard``.

The templates live in the top-level ``model_cards/`` folder; ``hf_bridges/model_cards`` is a link to it, so the
same files ship inside the wheel (package data) and are read from the source tree in an editable install.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from huggingface_hub import ModelCard, ModelCardData

HEAD_TEMPLATE = "head_card.md"
MODEL_TEMPLATE = "model_card.md"


def template_path(name: str) -> Path:
    """The template file, from the installed package or the source checkout."""
    here = Path(__file__).resolve().parent
    for folder in (here / "model_cards", here.parent / "model_cards"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"model card template {name} not found next to {here}; reinstall hf_bridges")


def _card_data(
    base_model: Optional[str], modality: str, tags: Sequence[str], datasets: Optional[Sequence[str]],
    metrics: Optional[dict[str, float]], extra_tags: Sequence[str] = (),
) -> ModelCardData:
    pipeline = {"text": "text-classification", "image": "image-classification"}.get(modality)
    base = base_model if base_model and not Path(base_model).exists() else None  # a local path is no Hub link
    return ModelCardData(
        library_name="hf_bridges",
        base_model=base,
        tags=sorted({"hf_bridges", "relative-representations", "zero-shot-stitching", *tags, *extra_tags}),
        datasets=list(datasets) if datasets else None,
        metrics=sorted(metrics) if metrics else None,
        pipeline_tag=pipeline,
    )


def head_card(
    head,
    repo_id: Optional[str] = None,
    dataset: Optional[str] = None,
    metrics: Optional[dict[str, float]] = None,
    stitching_results: Optional[list[dict[str, Any]]] = None,
    tags: Sequence[str] = (),
) -> ModelCard:
    """Card of a head (a ``head_format.BridgeHead``): metadata, how to attach it, stitching results if known."""
    config, encoder = head.config, head.encoder
    labels = [head.id2label[i] for i in sorted(head.id2label)] if head.id2label else []
    title = repo_id.split("/")[-1] if repo_id else f"Bridge head trained on {encoder.get('name_or_path') or 'an encoder'}"
    return ModelCard.from_template(
        _card_data(encoder.get("name_or_path"), config["modality"], tags, [dataset] if dataset else None, metrics,
                   ["bridge-head"]),
        template_path=str(template_path(HEAD_TEMPLATE)),
        title=title,
        repo_id=repo_id or "path/to/this-head",
        example_encoder="sentence-transformers/paraphrase-MiniLM-L3-v2" if config["modality"] == "text" else "an/encoder",
        num_anchors=config["num_anchors"],
        projections=config["projections"],
        subspace_norm=config["subspace_norm"],
        aggregation=config["aggregation"],
        num_labels=config.get("num_labels") or 0,
        labels=labels,
        encoder_name=encoder.get("name_or_path"),
        encoder_revision=encoder.get("revision"),
        encoder_model_type=encoder.get("model_type"),
        hidden_size=encoder.get("hidden_size"),
        modality=config["modality"],
        pooling=config["pooling"],
        max_seq_length=config["max_seq_length"],
        dataset=dataset,
        metrics=metrics,
        stitching_results=stitching_results,
        format_version=config["bridge_head_format_version"],
        weights_dtype=config.get("weights_dtype", "float32"),
    )


def model_card(
    model,
    repo_id: Optional[str] = None,
    dataset: Optional[str] = None,
    metrics: Optional[dict[str, float]] = None,
    tags: Sequence[str] = (),
) -> ModelCard:
    """Card of a full bridge model (encoder + head), for ``save_pretrained`` / ``push_to_hub`` folders."""
    config = model.config
    report = getattr(model, "stitch_report", None)
    classifier = getattr(model.head, "classifier", None) is not None
    return ModelCard.from_template(
        _card_data(config.encoder_name_or_path, config.modality, tags, [dataset] if dataset else None, metrics),
        template_path=str(template_path(MODEL_TEMPLATE)),
        title=repo_id.split("/")[-1] if repo_id else f"Bridge model on {config.encoder_name_or_path}",
        repo_id=repo_id or "path/to/this-model",
        encoder_name=config.encoder_name_or_path,
        num_anchors=config.num_anchors,
        projections=config.projections,
        aggregation=config.aggregation,
        num_labels=config.num_labels if classifier else 0,
        metrics=metrics,
        stitch_report=report,
    )
