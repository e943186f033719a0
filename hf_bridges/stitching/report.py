"""Tables, JSON and heatmaps from the per-(method, seed, train, test) runs. Every file is written to a temporary
path first and renamed, so an interrupted run never leaves a half-written report."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import numpy as np

from .._io import atomic_path, write_text_atomic
from .config import StitchConfig

LATENT_KEYS = ("cka", "jaccard", "mrr", "mean_cosine")


def _mean_std(values: list[float]) -> Optional[dict]:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def summarise(results: dict, config: StitchConfig) -> dict:
    """Per method: same-encoder and stitched means (mean over pairs, then mean ± std over seeds), full matrix."""
    names = [e.name for e in config.encoders]
    summary = {}
    for method in config.methods:
        runs = [r for r in results["runs"] if r["method"] == method.name and "skipped" not in r]
        row: dict = {}
        groups = (("same", lambda r: r["train"] == r["test"]), ("stitched", lambda r: r["train"] != r["test"]))
        for group, keep in groups:
            for metric in ("accuracy", "macro_f1"):
                per_seed = [np.mean([r[metric] for r in runs if r["seed"] == s and keep(r)]) for s in config.seeds
                            if any(r["seed"] == s and keep(r) for r in runs)]
                row[f"{group}_{metric}"] = _mean_std(per_seed)
        for key in LATENT_KEYS:
            vals = [r["latent"][key] for r in runs if r["train"] != r["test"] and r["latent"].get(key) is not None]
            row[f"stitched_{key}"] = _mean_std(vals)
        matrix = {}
        for a in names:
            matrix[a] = {}
            for b in names:
                pair = [r for r in results["runs"] if r["method"] == method.name and r["train"] == a and r["test"] == b]
                if pair and "skipped" in pair[0]:
                    matrix[a][b] = {"skipped": pair[0]["skipped"]}
                else:
                    matrix[a][b] = {m: _mean_std([r[m] for r in pair]) for m in ("accuracy", "macro_f1")}
                    if pair and "subspace_weights" in pair[0]:
                        matrix[a][b]["subspace_weights"] = pair[0]["subspace_weights"]
                        matrix[a][b]["subspace_scores"] = pair[0]["subspace_scores"]
        row["matrix"] = matrix
        same, stitched = row["same_accuracy"], row["stitched_accuracy"]
        row["stitched_over_same"] = stitched["mean"] / same["mean"] if same and stitched and same["mean"] else None
        summary[method.name] = row
    return summary


def _fmt(cell: Optional[dict], digits: int = 3) -> str:
    if not cell:
        return "n/a"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def summary_table(summary: dict) -> str:
    """The paper-style table: rows method; columns same-encoder and stitched means (± std over seeds)."""
    lines = ["| method | same acc | stitched acc | stitched / same | same macro-F1 | stitched macro-F1 | "
             "CKA | Jaccard@k | MRR | mean cos |", "|---" * 10 + "|"]
    for name, row in summary.items():
        ratio = f"{row['stitched_over_same']:.3f}" if row["stitched_over_same"] is not None else "n/a"
        latent = [_fmt(row[f"stitched_{k}"], 2).split(" ±")[0] for k in LATENT_KEYS]
        lines.append(f"| {name} | {_fmt(row['same_accuracy'])} | {_fmt(row['stitched_accuracy'])} | {ratio} | "
                     f"{_fmt(row['same_macro_f1'])} | {_fmt(row['stitched_macro_f1'])} | " + " | ".join(latent) + " |")
    return "\n".join(lines)


def matrix_table(name: str, row: dict) -> str:
    names = list(row["matrix"])
    lines = [f"**{name}** (rows: encoder the head was trained on; columns: encoder at test; accuracy)", "",
             "| train \\ test | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for a in names:
        cells = []
        for b in names:
            cell = row["matrix"][a][b]
            text = "n/a (widths differ)" if "skipped" in cell else _fmt(cell["accuracy"])
            if "subspace_weights" in cell and a != b:
                kept = [p for p, w in cell["subspace_weights"].items() if w > 0.5]
                text += f" (kept: {', '.join(kept)})"
            cells.append(text)
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heatmap(path: Path, name: str, row: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(row["matrix"])
    values = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            cell = row["matrix"][a][b]
            if "skipped" not in cell and cell["accuracy"]:
                values[i, j] = cell["accuracy"]["mean"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 1.2 + 1.1 * len(names)))
    im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("encoder at test")
    ax.set_ylabel("encoder trained on")
    for i in range(len(names)):
        for j in range(len(names)):
            text = "n/a" if np.isnan(values[i, j]) else f"{values[i, j]:.3f}"
            ax.text(j, i, text, ha="center", va="center", color="white" if values[i, j] < 0.6 else "black")
    ax.set_title(f"{name}: accuracy")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_outputs(results: dict, config: StitchConfig, output_dir: Path) -> dict:
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = results["summary"]
    plots = {}
    for name, row in summary.items():
        path = output_dir / f"heatmap-{re.sub(r'[^A-Za-z0-9_.+-]+', '_', name)}.png"
        heatmap(path, name, row)
        plots[name] = str(path)
    timing = results["timing_s"]
    data = results["dataset"]
    report = [
        f"# Zero-shot stitching: {config.name}", "",
        f"Dataset `{config.dataset.name}`: {data['train']} train / {data['test']} test, {data['num_labels']} classes. "
        f"Encoders: " + ", ".join(f"`{e.id}` ({e.name})" for e in config.encoders) + ". "
        f"{config.anchors.num} {config.anchors.strategy} anchors (seed {config.anchors.seed}), shared by all encoders. "
        f"Seeds {config.seeds}; {config.training.epochs} epochs, Adam lr {config.training.learning_rate}.", "",
        "Same = head evaluated on the encoder it was trained on; stitched = on every other encoder, zero-shot "
        "(mean over pairs, then mean ± std over seeds). Latent columns compare the head's representation r(z) of "
        "the test set under the training encoder and under the other encoder (stitched pairs).", "",
        summary_table(summary), "",
        "## Full matrices", "",
    ]
    for name, row in summary.items():
        report += [matrix_table(name, row), "", f"![{name}]({Path(plots[name]).name})", ""]
    report += ["## Timing", "",
               f"setup {timing['setup']:.1f} s, embedding {timing['embedding']:.1f} s, heads {timing['heads']:.1f} s, "
               f"evaluation {timing['evaluation']:.1f} s, total {timing['total']:.1f} s.", ""]
    best = results.get("best_head")
    if best:
        report += ["## Best head", "",
                   f"`{best['method']}`, seed {best['seed']}, trained on {best['train_encoder']} (its mean stitched "
                   f"accuracy {best['head_stitched_accuracy']:.3f}), written to `{best['folder']}` with its results "
                   f"in the card. Rule: {best['rule']}.", ""]
    outputs = {"results": str(output_dir / "results.json"), "report": str(output_dir / "report.md"), "plots": plots}
    write_text_atomic(output_dir / "report.md", "\n".join(report))
    results["outputs"] = outputs
    write_results(results, output_dir)
    return outputs


def write_results(results: dict, output_dir: Path) -> None:
    write_text_atomic(Path(output_dir) / "results.json", json.dumps(results, indent=2))
