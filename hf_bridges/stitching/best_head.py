"""The best head of a stitching run, published: kept while training (one state dict per method, nothing else),
chosen by a stated rule, rebuilt on its training encoder as a real ``BridgeForSequenceClassification``, written as a
head folder whose card carries the run's results, and pushed to the Hub on request."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._io import atomic_path
from .config import MethodSpec, StitchConfig

if TYPE_CHECKING:
    from ..modeling.modeling_bridge import BridgeForSequenceClassification

RULE = (
    "relative methods only (never the absolute baseline); the method with the highest mean stitched accuracy "
    "(same-encoder accuracy when the run has a single encoder), ties broken by the higher same-encoder accuracy, "
    "then by config order; within it, the (seed, training encoder) head whose own mean stitched accuracy is "
    "highest, same tie rule"
)
FOLDER_NAME = "best-head"


def rule_text(method: str) -> str:
    """``RULE`` as it applied to this run's ``best_head.method``."""
    if method == "best":
        return RULE
    if method == "best-product":
        return RULE.replace("the method with", "among product methods (>= 2 projections), the method with")
    head_rule = RULE[RULE.index("within it") :]
    return f"method `{method}`, named in the config; {head_rule}"


def _key(runs: list[dict], source: str) -> tuple[float, float]:
    """(stitched accuracy, same accuracy) of one head's runs; stitched falls back to same with one encoder."""
    same = [r["accuracy"] for r in runs if r["test"] == source]
    stitched = [r["accuracy"] for r in runs if r["test"] != source]
    same_mean = float(np.mean(same)) if same else 0.0
    return (float(np.mean(stitched)) if stitched else same_mean, same_mean)


class BestHeadTracker:
    """Keeps, per relative method, only the state dict of its best head so far (a few MB per method)."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[tuple[float, float], int, str, dict[str, torch.Tensor]]] = {}

    def offer(self, method: MethodSpec, seed: int, source: str, head: torch.nn.Module, runs: list[dict]) -> None:
        if method.kind != "relative":
            return
        key = _key(runs, source)
        if method.name not in self.best or key > self.best[method.name][0]:  # strict: the earlier head wins ties
            state = {k: v.detach().to("cpu", copy=True) for k, v in head.state_dict().items()}
            self.best[method.name] = (key, seed, source, state)


def choose_method(summary: dict, config: StitchConfig) -> MethodSpec:
    """The method named by ``best_head.method``, or the best one under ``RULE``."""
    wanted = config.best_head.method
    candidates = [m for m in config.methods if m.kind == "relative"]
    if wanted == "best-product":
        candidates = [m for m in candidates if len(m.projections) > 1]
    elif wanted != "best":
        return next(m for m in candidates if m.name == wanted)
    best, best_key = None, None
    for method in candidates:
        row = summary[method.name]
        same = row["same_accuracy"]["mean"] if row["same_accuracy"] else 0.0
        stitched = row["stitched_accuracy"]["mean"] if row["stitched_accuracy"] else same
        if best_key is None or (stitched, same) > best_key:
            best, best_key = method, (stitched, same)
    return best


def rebuild_bridge(
    method: MethodSpec,
    config: StitchConfig,
    encoder_name: str,
    anchor_texts: list,
    anchor_labels: Sequence[int],
    label_names: list[str],
    state: dict,
    anchor_embeddings: np.ndarray,
) -> BridgeForSequenceClassification:
    """The trained head on its training encoder, as a bridge model; refuses if the bridge embeds the anchors
    differently from the benchmark's cache (the head would then not be the one that was measured)."""
    from ..modeling.modeling_bridge import BridgeForSequenceClassification
    from .encoder_kinds import text_settings

    spec = config.encoder(encoder_name)
    settings = text_settings(spec)  # the pooling / length the benchmark embedded with (from an ST model if unset)
    model = BridgeForSequenceClassification.from_encoder(
        spec.id,
        anchors=anchor_texts,
        anchor_labels=anchor_labels,
        revision=spec.revision,
        pooling=settings["pooling"],
        max_seq_length=settings["max_length"],
        prefix=settings["prefix"],
        normalize_embeddings=settings["normalize"],
        head_config=method.head_config(config.head),
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    model.head.load_state_dict(state, strict=True)
    model.eval()
    cached = torch.from_numpy(anchor_embeddings).float()
    diff = (model.anchor_embeddings.detach().float().cpu() - cached).abs().max().item()
    if diff > 1e-3 * cached.abs().max().item() + 1e-5:
        raise RuntimeError(
            f"the rebuilt bridge on {spec.id} embeds the anchors differently from the benchmark's cache (max abs "
            f"difference {diff:.2e}); the saved head would not be the measured one. Was the encoder changed during "
            "the run? Clear the embedding cache (--cache-dir) and run again"
        )
    return model


def _card_section(results: dict, config: StitchConfig, method: MethodSpec, info: dict) -> str:
    from .report import summary_table

    data = results["dataset"]
    select = method.select
    lines = [
        "## Zero-shot stitching benchmark (`hf-bridges stitch`)",
        "",
        f"This head is the best one of the run `{config.name}`: method `{method.name}` "
        f"(projections {', '.join(method.projections)}; aggregation {method.aggregation}; abs transform "
        f"{method.abs_transform}; subspace dropout {method.subspace_dropout}), seed {info['seed']}, trained on "
        f"`{info['train_encoder_id']}`. Data: `{config.dataset.name}`, {data['train']} train / {data['test']} test, "
        f"{config.anchors.num_anchors} {config.anchors.strategy} anchors, {config.training.num_epochs} epochs.",
        "",
        f"Choice rule: {info['rule']}. The choice is made on the test split, so the numbers below are an optimistic "
        "estimate for this particular head.",
        "",
    ]
    if select is not None:
        lines += [
            f"The stitched numbers keep the subspaces chosen from the anchors alone ({select.mode} selection, "
            f'tolerance {select.tolerance}): attach with `subspace_selection="{select.mode}"` to do the '
            "same.",
            "",
        ]
    lines += ["| encoder at test | accuracy | macro-F1 | subspaces kept |", "|---|---|---|---|"]
    for name, cell in info["per_encoder"].items():
        kept = ", ".join(p for p, w in (cell.get("subspace_weights") or {}).items() if w > 0.5) or "all"
        mark = " (training encoder)" if name == info["train_encoder"] else ""
        lines.append(f"| `{cell['id']}`{mark} | {cell['accuracy']:.3f} | {cell['macro_f1']:.3f} | {kept} |")
    lines += [
        "",
        f"All methods of the run (mean ± std over seeds {config.seeds}; same = the training encoder, "
        "stitched = every other encoder, zero-shot):",
        "",
        summary_table(results["summary"]),
        "",
    ]
    return "\n".join(lines)


def _append_to_card(folder: Path, section: str) -> None:
    from huggingface_hub import ModelCard

    from ..heads.format import CARD_NAME

    card = ModelCard.load(folder / CARD_NAME)
    card.text = card.text.rstrip() + "\n\n" + section
    with atomic_path(folder / CARD_NAME) as tmp:
        card.save(tmp)


def save_best_head(
    tracker: BestHeadTracker,
    results: dict,
    config: StitchConfig,
    anchor_texts: list,
    anchor_labels: list,
    anchors: dict[str, np.ndarray],
    output_dir: Path,
) -> dict:
    """Rebuild the chosen head, write ``output_dir/best-head/`` (card: metrics, stitching results, the run's
    table) and return what was saved (also stored as ``results["best_head"]``)."""
    from ..heads.compatibility import compute_stitch_report
    from ..heads.hub import save_head

    spec = config.best_head
    method = choose_method(results["summary"], config)
    (stitched, same), seed, source, state = tracker.best[method.name]
    runs = {
        r["test"]: r
        for r in results["runs"]
        if r["method"] == method.name and r["seed"] == seed and r["train"] == source
    }
    per_encoder, stitching_results = {}, []
    for encoder in config.encoders:
        run = runs[encoder.name]
        weights = run.get("subspace_weights")
        score = compute_stitch_report(
            torch.from_numpy(anchors[source]),
            torch.from_numpy(anchors[encoder.name]),
            method.projections,
            abs_transform=method.abs_transform,
            subspace_norm=config.head.subspace_norm,
            subspace_weights=list(weights.values()) if weights else None,
            warn=False,
        ).score
        per_encoder[encoder.name] = {
            "id": encoder.id,
            "accuracy": run["accuracy"],
            "macro_f1": run["macro_f1"],
            "stitch_score": score,
            "subspace_weights": weights,
        }
        stitching_results.append({"encoder": encoder.id, "stitch_score": score, "accuracy": run["accuracy"]})
    label_names = results["dataset"]["label_names"]
    info: dict[str, Any] = {
        "rule": rule_text(spec.method),
        "method": method.name,
        "seed": seed,
        "train_encoder": source,
        "train_encoder_id": config.encoder(source).id,
        "method_stitched_accuracy": (results["summary"][method.name]["stitched_accuracy"] or {}).get("mean"),
        "head_stitched_accuracy": stitched,
        "head_same_accuracy": same,
        "subspace_selection": method.select.mode if method.select else None,
        "per_encoder": per_encoder,
    }
    model = rebuild_bridge(method, config, source, anchor_texts, anchor_labels, label_names, state, anchors[source])
    folder = save_head(
        model,
        Path(output_dir) / FOLDER_NAME,
        weights_dtype=spec.weights_dtype,
        repo_id=spec.repo_id,
        dataset=config.dataset.name,
        stitching_results=stitching_results,
        metrics={"accuracy": per_encoder[source]["accuracy"], "macro_f1": per_encoder[source]["macro_f1"]},
        anchors_in_training=True,  # the heads train on the whole train split, anchors and alignment set included
    )
    _append_to_card(folder, _card_section(results, config, method, info))
    info["folder"] = str(folder)
    return info


def push_best_head(
    info: dict, config: StitchConfig, token: str | bool | None = None, endpoint: str | None = None
) -> dict:
    """Upload the saved folder to ``best_head.repo_id`` (checked by ``push_head_folder`` before upload)."""
    from ..heads.hub import push_head_folder

    spec = config.best_head
    commit = push_head_folder(
        info["folder"],
        spec.repo_id,
        private=spec.private,
        token=token,
        endpoint=endpoint,
        commit_message=f"Upload the best head of stitch run {config.name}: {info['method']} "
        f"(seed {info['seed']}, trained on {info['train_encoder']})",
    )
    return {"repo_id": spec.repo_id, "commit": commit.oid, "url": str(commit.repo_url)}
