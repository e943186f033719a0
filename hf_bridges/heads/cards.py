"""Model cards for heads and full models, rendered from the Jinja templates in ``model_cards/`` by ``ModelCard``.

The templates live in the top-level ``model_cards/`` folder; ``hf_bridges/model_cards`` is a link to it, so the
same files ship inside the wheel (package data) and are read from the source tree in an editable install.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

HEAD_TEMPLATE = "head_card.md"
MODEL_TEMPLATE = "model_card.md"
HEAD_PLACEHOLDER = "path/to/this-head"
ENCODER_TAG = "hf-bridges-encoder:"  # one tag per encoder a head was trained or measured on: Hub search filters tags
LIBRARY_TAGS = ("hf-bridges", "relative-representations", "zero-shot-stitching")


def encoder_tag(encoder_id: str) -> str:
    """The searchable tag naming an encoder (``hf-bridges-encoder:sentence-transformers/all-MiniLM-L6-v2``)."""
    return ENCODER_TAG + encoder_id


def template_path(name: str) -> Path:
    """The template file, from the installed package or the source checkout."""
    here = Path(__file__).resolve().parent
    for folder in (here / "model_cards", here.parent / "model_cards"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"model card template {name} not found next to {here}; reinstall hf_bridges")


def _hub_id(name: str | None) -> str | None:
    return name if name and not Path(name).exists() else None  # a local path is no Hub link


def _card_data(
    base_model: str | None,
    modality: str,
    tags: Sequence[str],
    datasets: Sequence[str] | None,
    metrics: dict[str, float] | None,
    extra_tags: Sequence[str] = (),
    **extra: Any,
) -> ModelCardData:
    pipeline = {"text": "text-classification", "image": "image-classification"}.get(modality)
    return ModelCardData(
        library_name="hf_bridges",
        base_model=_hub_id(base_model),
        tags=sorted({*LIBRARY_TAGS, modality, *tags, *extra_tags}),
        datasets=list(datasets) if datasets else None,
        metrics=sorted(metrics) if metrics else None,
        pipeline_tag=pipeline,
        **extra,
    )


def _stitch_eval_results(modality: str, dataset: str | None, rows: Sequence[dict]) -> list | None:
    """``model-index`` entries: accuracy of the head stitched onto each measured encoder (the encoder is the
    metric config, so the Hub shows one row per encoder)."""
    if not dataset:
        return None
    task = {"text": "text-classification", "image": "image-classification"}.get(modality, "other")
    results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type="accuracy",
            metric_value=float(row["accuracy"]),
            metric_name=f"accuracy stitched to {row['encoder']}",
            metric_config=str(row["encoder"]),
        )
        for row in rows
        if row.get("accuracy") is not None and row.get("encoder")
    ]
    return results or None


def head_card(
    head,
    repo_id: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    stitching_results: list[dict[str, Any]] | None = None,
    tags: Sequence[str] = (),
) -> ModelCard:
    """Card of a head (a ``head_format.BridgeHead``): metadata, how to attach it, stitching results if known."""
    config, encoder = head.config, head.encoder
    labels = [head.id2label[i] for i in sorted(head.id2label)] if head.id2label else []
    title = (
        repo_id.split("/")[-1] if repo_id else f"Bridge head trained on {encoder.get('name_or_path') or 'an encoder'}"
    )
    trained_on = _hub_id(encoder.get("name_or_path"))
    measured_on = sorted({str(r["encoder"]) for r in stitching_results or () if _hub_id(r.get("encoder"))})
    searchable = [encoder_tag(e) for e in sorted({*([trained_on] if trained_on else []), *measured_on})]
    data = _card_data(
        encoder.get("name_or_path"),
        config["modality"],
        tags,
        [dataset] if dataset else None,
        metrics,
        ["bridge-head", *searchable],
        eval_results=_stitch_eval_results(config["modality"], dataset, stitching_results or ()),
        model_name=repo_id.split("/")[-1] if repo_id else "bridge-head",
        hf_bridges={
            "kind": "head",
            "repo_id": repo_id,
            "trained_on": trained_on,
            "measured_on": measured_on,
            "num_anchors": config["num_anchors"],
            "projections": list(config["projections"]),
        },
    )
    return ModelCard.from_template(
        data,
        template_path=str(template_path(HEAD_TEMPLATE)),
        title=title,
        repo_id=repo_id or HEAD_PLACEHOLDER,
        example_encoder="sentence-transformers/paraphrase-MiniLM-L3-v2"
        if config["modality"] == "text"
        else "an/encoder",
        num_anchors=config["num_anchors"],
        relative_anchors=config.get("relative_anchors"),
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
        input_prefix=config.get("input_prefix") or "",
        dataset=dataset,
        metrics=metrics,
        stitching_results=stitching_results,
        format_version=config["bridge_head_format_version"],
        weights_dtype=config.get("weights_dtype", "float32"),
    )


def model_card(
    model,
    repo_id: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    tags: Sequence[str] = (),
    head_repo: str | None = None,
    head_revision: str | None = None,
    stitch_report: Any = None,
) -> ModelCard:
    """Card of a full bridge model (encoder + head), for ``save_pretrained`` / ``push_to_hub`` folders.

    A stitched model (``from_encoder(..., head=...)``) names where its head came from: ``head_repo`` /
    ``head_revision`` / ``stitch_report`` default to the model's ``config.head_source`` (``{"repo_id", "revision",
    "stitch_report"}``) and ``model.stitch_report``."""
    config = model.config
    source = dict(getattr(config, "head_source", None) or {})
    head_repo = head_repo or source.get("repo_id")
    head_revision = head_revision or source.get("revision")
    report = stitch_report if stitch_report is not None else getattr(model, "stitch_report", None)
    report = report if report is not None else source.get("stitch_report")
    report_dict = report.to_dict() if hasattr(report, "to_dict") else report
    classifier = getattr(model.head, "classifier", None) is not None
    extra = {}
    if head_repo:
        extra["hf_bridges"] = {
            "kind": "stitched-model",
            "head_repo": head_repo,
            "head_revision": head_revision,
            "stitch_report": report_dict,
        }
    return ModelCard.from_template(
        _card_data(
            config.encoder_name_or_path,
            config.modality,
            tags,
            [dataset] if dataset else None,
            metrics,
            ["stitched"] if head_repo else [],
            **extra,
        ),
        template_path=str(template_path(MODEL_TEMPLATE)),
        title=repo_id.split("/")[-1] if repo_id else f"Bridge model on {config.encoder_name_or_path}",
        repo_id=repo_id or "path/to/this-model",
        encoder_name=config.encoder_name_or_path,
        num_anchors=config.num_anchors,
        relative_anchors=config.head.relative_anchors,
        projections=config.projections,
        aggregation=config.aggregation,
        num_labels=config.num_labels if classifier else 0,
        metrics=metrics,
        stitch_report=report,
        head_repo=head_repo,
        head_revision=head_revision,
    )


def retarget_head_card(card: ModelCard, repo_id: str) -> ModelCard:
    """The same card naming ``repo_id`` (where it is being pushed) in its usage snippets, title and metadata:
    a head folder saved without a repo id (or for another repo) must not say ``head="path/to/this-head"`` on the Hub."""
    meta = dict(card.data.get("hf_bridges") or {})
    old = meta.get("repo_id") or HEAD_PLACEHOLDER
    text = str(card)
    if old != repo_id:
        text = text.replace(f'"{old}"', f'"{repo_id}"').replace(f"attach {old} ", f"attach {repo_id} ")
        text = text.replace(f'"{HEAD_PLACEHOLDER}"', f'"{repo_id}"').replace(
            f"attach {HEAD_PLACEHOLDER} ", f"attach {repo_id} "
        )
    new = ModelCard(text)
    new.data.hf_bridges = {**meta, "repo_id": repo_id}
    new.data.model_name = repo_id.split("/")[-1]
    return new
