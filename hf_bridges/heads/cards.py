"""Model cards for heads and full models, rendered from the Jinja templates in ``model_cards/`` by ``ModelCard``.

The templates live in the top-level ``model_cards/`` folder, the one source: ``hf_bridges/model_cards`` is a link to
it, so the same files ship inside the wheel (package data) and are read from the source tree in an editable install.
Every card is ``huggingface_hub.ModelCard.from_template`` over ``ModelCardData`` (``model-index`` from ``EvalResult``).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .._io import atomic_path
from ..snapshots import resolved_revision

if TYPE_CHECKING:
    from ..modeling.modeling_bridge import BridgePreTrainedModel
    from .format import BridgeHead

HEAD_TEMPLATE = "head_card.md"
MODEL_TEMPLATE = "model_card.md"
HEAD_PLACEHOLDER = "path/to/this-head"
ENCODER_TAG = "hf-bridges-encoder:"  # one tag per encoder a head was trained or measured on: Hub search filters tags
LIBRARY_TAGS = ("hf-bridges", "relative-representations", "zero-shot-stitching")
EXAMPLE_ENCODERS = {"text": "sentence-transformers/paraphrase-MiniLM-L3-v2"}  # attach snippet's encoder


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


def anchors_sha256(anchors: Sequence[Any] | None) -> str | None:
    """A content hash of the raw anchor inputs (texts, or image arrays), the same for a head and the full model
    holding the same anchors: two cards with one hash were built on one anchor set."""
    if anchors is None or len(anchors) == 0:
        return None
    digest = hashlib.sha256()
    for anchor in anchors:
        if isinstance(anchor, str):
            digest.update(b"s" + len(anchor.encode()).to_bytes(8, "little") + anchor.encode())
        else:
            array = np.ascontiguousarray(np.asarray(anchor))
            digest.update(f"a{array.dtype.str}{array.shape}".encode() + array.tobytes())
    return digest.hexdigest()


def pipeline_tag(modality: str, classifier: bool) -> str | None:
    """The Hub task of a bridge: classification with a classifier, else feature extraction."""
    return {
        ("text", True): "text-classification",
        ("text", False): "feature-extraction",
        ("image", True): "image-classification",
        ("image", False): "image-feature-extraction",
    }.get((modality, classifier))


def head_facts(head: dict[str, Any], num_anchors: int, num_labels: int) -> dict[str, Any]:
    """What the head is, read from its config (``HeadConfig`` fields), for the card text and metadata: the
    relative anchors and the alignment set counted apart, the components and how they meet the classifier."""
    relative = head.get("relative_anchors") or num_anchors
    aligned = bool(head.get("aligned"))
    return {
        "relative_anchors": relative,
        "alignment_inputs": num_anchors - relative,
        "projections": list(head.get("projections") or []),
        "abs_transform": head.get("abs_transform") or "none",
        "subspace_norm": head.get("subspace_norm") or "none",
        "aggregation": head.get("aggregation"),
        "aligned": aligned,
        "combine": head.get("combine") if aligned else None,
        "component_dropout": head.get("component_dropout") if aligned else None,
        "num_labels": num_labels,
    }


def _metadata(
    *,
    kind: str,
    base_model: str | None,
    relation: str,
    library_name: str,
    modality: str,
    classifier: bool,
    tags: Sequence[str],
    datasets: Sequence[str] | None,
    metrics: dict[str, float] | None,
    eval_results: list | None,
    model_name: str,
    facts: dict[str, Any],
    encoder: dict[str, Any],
    anchors_hash: str | None,
    **extra: Any,
) -> ModelCardData:
    """The metadata every card carries (``ModelCardData``; ``model-index`` from ``eval_results``)."""
    base = _hub_id(base_model)
    return ModelCardData(
        library_name=library_name,
        pipeline_tag=pipeline_tag(modality, classifier),
        base_model=base,
        base_model_relation=relation if base else None,
        tags=sorted({*LIBRARY_TAGS, modality, *tags}),
        datasets=list(datasets) if datasets else None,
        metrics=sorted(metrics) if metrics else None,
        eval_results=eval_results or None,
        model_name=model_name,
        hf_bridges={
            "kind": kind,
            **{k: v for k, v in extra.items() if v is not None},
            "encoder": {k: v for k, v in encoder.items() if v is not None},
            "anchors": {
                "sha256": anchors_hash,
                "relative": facts["relative_anchors"],
                "alignment": facts["alignment_inputs"],
            },
            "num_anchors": facts["relative_anchors"],  # the relative subspaces' width (the alignment set apart)
            "head": {  # copies: a shared list would be written as a YAML anchor and alias
                key: copy.deepcopy(facts[key])
                for key in ("projections", "abs_transform", "subspace_norm", "aggregation", "aligned", "combine")
            },
            "projections": list(facts["projections"]),
        },
    )


def _eval_results(modality: str, classifier: bool, dataset: str | None, rows: Sequence[dict]) -> list | None:
    """``model-index`` entries: one per (encoder, metric); the encoder is the metric config, so the Hub shows one
    row per encoder the head was measured on."""
    if not dataset:
        return None
    task = pipeline_tag(modality, classifier) or "other"
    results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset,
            dataset_name=dataset,
            metric_type=metric,
            metric_value=float(row[metric]),
            metric_name=f"{metric} on {row['encoder']}",
            metric_config=str(row["encoder"]),
        )
        for row in rows
        for metric in ("accuracy", "macro_f1")
        if row.get(metric) is not None and row.get("encoder")
    ]
    return results or None


def head_card(
    head: BridgeHead,
    repo_id: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    stitching_results: list[dict[str, Any]] | None = None,
    tags: Sequence[str] = (),
    location: str | os.PathLike | None = None,
) -> ModelCard:
    """Card of a head (a ``head_format.BridgeHead``): metadata, how to attach it, stitching results if known.

    The attach snippet names ``repo_id``, else ``location`` (the folder it is written to, so the snippet runs as
    written there), else a placeholder; ``push_head_folder`` retargets it to the repo it is pushed to."""
    config, encoder = head.config, head.encoder
    labels = [head.id2label[i] for i in sorted(head.id2label)] if head.id2label else []
    trained_on = _hub_id(encoder.get("name_or_path"))
    title = repo_id.split("/")[-1] if repo_id else f"Bridge head trained on {trained_on or 'an encoder'}"
    rows = list(stitching_results or ())
    if metrics and trained_on and not any(r.get("encoder") == trained_on for r in rows):
        rows.insert(0, {"encoder": trained_on, **metrics})  # the training encoder is measured too
    measured_on = sorted({str(r["encoder"]) for r in rows if _hub_id(r.get("encoder"))})
    facts = head_facts(config, config["num_anchors"], config.get("num_labels") or 0 if head.has_classifier else 0)
    target = repo_id or (str(Path(location).resolve()) if location is not None else HEAD_PLACEHOLDER)
    data = _metadata(
        kind="head",
        base_model=encoder.get("name_or_path"),
        relation="adapter",
        library_name="hf_bridges",
        modality=config["modality"],
        classifier=head.has_classifier,
        tags=[*tags, "bridge-head", *(encoder_tag(e) for e in sorted({*filter(None, [trained_on]), *measured_on}))],
        datasets=[dataset] if dataset else None,
        metrics=metrics,
        eval_results=_eval_results(config["modality"], head.has_classifier, dataset, rows),
        model_name=repo_id.split("/")[-1] if repo_id else "bridge-head",
        facts=facts,
        encoder=_encoder_meta(
            encoder.get("name_or_path"), encoder.get("revision") or encoder.get("commit_hash"), config, trained_on
        ),
        anchors_hash=anchors_sha256(head.anchors),
        repo_id=repo_id,
        load_from=None if repo_id else target,
        trained_on=trained_on,
        measured_on=measured_on,
    )
    return ModelCard.from_template(
        data,
        template_path=str(template_path(HEAD_TEMPLATE)),
        title=title,
        repo_id=target,
        example_encoder=EXAMPLE_ENCODERS.get(config["modality"], "an/encoder"),
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
        **facts,
    )


def _encoder_meta(name: str | None, revision: str | None, config: Any, hub_id: str | None) -> dict[str, Any]:
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    normalize = get("normalize_embeddings")  # a head's config holds it in its encoder record (None: an older head)
    normalize = (
        (get("encoder") or {}).get("normalize_embeddings")
        if normalize is None and isinstance(config, dict)
        else normalize
    )
    return {
        "name_or_path": hub_id or (Path(name).name if name else None),
        "revision": resolved_revision(hub_id, revision),
        "pooling": get("pooling"),
        "input_prefix": get("input_prefix") or "",
        "max_seq_length": get("max_seq_length"),
        "normalize_embeddings": None if normalize is None else bool(normalize),
    }


AUTO_CLASSES = {
    "BridgeModel": "AutoModel",
    "BridgeForSequenceClassification": "AutoModelForSequenceClassification",
    "BridgeForImageClassification": "AutoModelForImageClassification",
}


def model_card(
    model: BridgePreTrainedModel,
    repo_id: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    tags: Sequence[str] = (),
    head_repo: str | None = None,
    head_revision: str | None = None,
    stitch_report: Any = None,
    location: str | os.PathLike | None = None,
) -> ModelCard:
    """Card of a full bridge model (encoder + head), for ``save_pretrained`` / ``push_to_hub`` folders.

    The load snippet names ``repo_id``, else ``location`` (the folder being written), else a placeholder. A
    stitched model (``from_encoder(..., head=...)``) names where its head came from: ``head_repo`` /
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
    head = config.head.to_dict() if hasattr(config.head, "to_dict") else dict(config.head or {})
    facts = head_facts(head, config.num_anchors, config.num_labels if classifier else 0)
    encoder_id = _hub_id(config.encoder_name_or_path) or _hub_id(getattr(config, "_name_or_path", None))
    target = repo_id or (str(Path(location).resolve()) if location is not None else "path/to/this-model")
    extra: dict[str, Any] = {"repo_id": repo_id}
    if head_repo:
        extra.update(head_repo=head_repo, head_revision=head_revision, stitch_report=report_dict)
    frozen = bool(getattr(config, "freeze_encoder", True))
    data = _metadata(
        kind="stitched-model" if head_repo else "model",
        base_model=encoder_id,
        relation="adapter" if frozen else "finetune",  # a trained encoder is a fine-tune, not an adapter on it
        library_name="transformers",
        modality=config.modality,
        classifier=classifier,
        tags=[*tags, *(["stitched"] if head_repo else [])],
        datasets=[dataset] if dataset else None,
        metrics=metrics,
        eval_results=_eval_results(config.modality, classifier, dataset, [{"encoder": encoder_id, **(metrics or {})}])
        if metrics and encoder_id
        else None,
        model_name=repo_id.split("/")[-1] if repo_id else "bridge-model",
        facts=facts,
        encoder=_encoder_meta(config.encoder_name_or_path, _model_revision(model), config, encoder_id),
        anchors_hash=anchors_sha256(_model_anchors(model)),
        **extra,
    )
    return ModelCard.from_template(
        data,
        template_path=str(template_path(MODEL_TEMPLATE)),
        title=repo_id.split("/")[-1] if repo_id else f"Bridge model on {encoder_id or 'an encoder'}",
        repo_id=target,
        auto_class=AUTO_CLASSES.get(type(model).__name__),
        class_name=type(model).__name__,
        encoder_name=encoder_id or config.encoder_name_or_path or "a user module",
        modality=config.modality,
        metrics=metrics,
        stitch_report=report,
        head_repo=head_repo,
        head_revision=head_revision,
        frozen=frozen,
        **facts,
    )


def _model_revision(model) -> str | None:
    """The encoder revision asked for, else the commit it was loaded at (transformers' ``_commit_hash``)."""
    encoder_config = getattr(getattr(model, "encoder", None), "config", None)
    return model.config.encoder_revision or getattr(encoder_config, "_commit_hash", None)


def _model_anchors(model) -> Any:
    anchors = getattr(model.config, "anchors", None)
    if anchors:
        return anchors
    for name in ("pixels", "inputs"):  # an image bridge's uint8 pixels, a module bridge's input tensor
        raw = getattr(model.anchors, name, None)
        if raw is not None:
            return list(raw.detach().cpu().numpy())
    return None


def is_generated(card: ModelCard) -> bool:
    """A card this package wrote (rewritten on every save / push), or transformers' blank template (replaced);
    anything else is the user's own card and is left alone."""
    meta = card.data.get("hf_bridges") or {}
    return bool(meta.get("kind")) or "# Model Card for Model ID" in card.text


def write_model_card(
    model: BridgePreTrainedModel, folder: str | os.PathLike, repo_id: str | None = None
) -> Path | None:
    """``README.md`` of a saved / pushed full model: the bridge's card, unless the folder holds the user's own."""
    path = Path(folder) / "README.md"
    if path.is_file():
        try:
            existing = ModelCard.load(path)
        except Exception:  # a README whose metadata does not parse is the user's own too: keep it
            return None
        if not is_generated(existing):
            return None
    card = model_card(model, repo_id=repo_id, location=None if repo_id else folder)
    with atomic_path(path) as tmp:
        card.save(tmp)
    return path


def retarget_head_card(card: ModelCard, repo_id: str) -> ModelCard:
    """The same card naming ``repo_id`` (where it is being pushed) in its usage snippets, title and metadata:
    a head folder saved without a repo id (or for another repo) must not name its local folder on the Hub."""
    meta = dict(card.data.get("hf_bridges") or {})
    text = str(card)
    for old in {meta.get("repo_id"), meta.get("load_from"), HEAD_PLACEHOLDER} - {None, repo_id}:
        text = text.replace(f'"{old}"', f'"{repo_id}"').replace(f"attach {old} ", f"attach {repo_id} ")
        text = text.replace(f" {old} ", f" {repo_id} ")  # command lines: hf-bridges index inspect / migrate {old} ...
    new = ModelCard(text)
    meta.pop("load_from", None)
    new.data.hf_bridges = {**meta, "repo_id": repo_id}
    new.data.model_name = repo_id.split("/")[-1]
    return new


def _section(text: str, heading: str) -> str:
    """The ``## heading`` section of a card's text (up to the next ``## ``), or ""."""
    start = text.find(f"## {heading}")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 3)
    return text[start : end if end >= 0 else len(text)].rstrip() + "\n"


def merge_into_card(path: str | os.PathLike, model: BridgePreTrainedModel, repo_id: str | None = None) -> ModelCard:
    """Add the bridge's metadata and load lines to a card another tool wrote (``Trainer.create_model_card``: its
    training summary, hyper-parameters and results stay): ``pipeline_tag``, ``base_model`` /
    ``base_model_relation``, the ``hf_bridges`` block (anchors' hash, encoder revision / prompt / pooling), tags."""
    card = ModelCard.load(path)
    ours = model_card(model, repo_id=repo_id, location=None if repo_id else Path(path).parent)
    for key in ("pipeline_tag", "base_model", "base_model_relation", "hf_bridges"):
        if ours.data.get(key) is not None and (key != "base_model" or not card.data.get(key)):
            setattr(card.data, key, ours.data.get(key))
    if card.data.get("base_model") and not card.data.get("base_model_relation"):
        card.data.base_model_relation = ours.data.get("base_model_relation") or "adapter"
    card.data.tags = sorted({*(card.data.tags or []), *(ours.data.tags or [])})
    if "trust_remote_code=True" not in card.text:
        card.text = card.text.rstrip() + "\n\n" + _section(ours.text, "Load it")
    with atomic_path(path) as tmp:
        card.save(tmp)
    return card


class BridgeTrainerCardMixin:
    """``class MyTrainer(BridgeTrainerCardMixin, transformers.Trainer)``: the Trainer's card (written by
    ``create_model_card``, which ``push_to_hub`` calls) gets the bridge's metadata, its task (so the results become
    ``model-index`` entries) and the ``trust_remote_code=True`` load lines. A plain ``Trainer`` only takes the
    model's tags (``add_model_tags``) and ``base_model`` (``config._name_or_path``): nothing else of its card
    passes through the model."""

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        model = self.accelerator.unwrap_model(self.model)
        bridge = model.get_base_model() if hasattr(model, "get_base_model") else model
        classifier = getattr(bridge.head, "classifier", None) is not None
        kwargs.setdefault("tasks", pipeline_tag(bridge.config.modality, classifier))
        super().create_model_card(*args, **kwargs)
        path = Path(self.args.output_dir) / "README.md"
        if self.is_world_process_zero() and path.is_file():
            merge_into_card(path, bridge, repo_id=self.hub_model_id)
