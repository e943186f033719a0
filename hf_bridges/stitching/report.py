"""Tables, JSON and heatmaps from the per-(method, seed, train, test) runs. Every file is written to a temporary
path first and renamed, so an interrupted run never leaves a half-written report."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, write_text_atomic
from ..logging import get_logger
from .config import StitchConfig

logger = get_logger(__name__)

LATENT_KEYS = ("cka", "jaccard", "mrr", "mean_cosine")


def _mean_std(values: list[float]) -> dict | None:
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
                per_seed = [
                    np.mean([r[metric] for r in runs if r["seed"] == s and keep(r)])
                    for s in config.seeds
                    if any(r["seed"] == s and keep(r) for r in runs)
                ]
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


def _fmt(cell: dict | None, digits: int = 3) -> str:
    if not cell:
        return "n/a"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def summary_table(summary: dict) -> str:
    """The paper-style table: rows method; columns same-encoder and stitched means (± std over seeds)."""
    lines = [
        "| method | same acc | stitched acc | stitched / same | same macro-F1 | stitched macro-F1 | "
        "CKA | Jaccard@k | MRR | mean cos |",
        "|---" * 10 + "|",
    ]
    for name, row in summary.items():
        ratio = f"{row['stitched_over_same']:.3f}" if row["stitched_over_same"] is not None else "n/a"
        latent = [_fmt(row[f"stitched_{k}"], 2).split(" ±")[0] for k in LATENT_KEYS]
        lines.append(
            f"| {name} | {_fmt(row['same_accuracy'])} | {_fmt(row['stitched_accuracy'])} | {ratio} | "
            f"{_fmt(row['same_macro_f1'])} | {_fmt(row['stitched_macro_f1'])} | " + " | ".join(latent) + " |"
        )
    return "\n".join(lines)


def matrix_table(name: str, row: dict) -> str:
    names = list(row["matrix"])
    lines = [
        f"**{name}** (rows: encoder the head was trained on; columns: encoder at test; accuracy)",
        "",
        "| train \\ test | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colour_range(values: np.ndarray) -> tuple[float, float]:
    """The colour scale spans the data (min..max, a little padded), not 0..1: 0.94 vs 0.97 must look different."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = max((high - low) * 0.05, 0.005)
    return max(low - pad, 0.0), min(high + pad, 1.0)


def heatmap(path: Path, name: str, row: dict) -> None:
    plt = _pyplot()
    names = list(row["matrix"])
    values = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            cell = row["matrix"][a][b]
            if "skipped" not in cell and cell["accuracy"]:
                values[i, j] = cell["accuracy"]["mean"]
    vmin, vmax = colour_range(values)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 1.2 + 1.1 * len(names)))
    im = ax.imshow(values, vmin=vmin, vmax=vmax, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("encoder at test")
    ax.set_ylabel("encoder trained on")
    for i in range(len(names)):
        for j in range(len(names)):
            value = values[i, j]
            text = "n/a" if np.isnan(value) else f"{value:.3f}"
            dark = np.isnan(value) or (value - vmin) / (vmax - vmin) < 0.5  # viridis: dark at the low end
            ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
    ax.set_title(f"{name}: accuracy (colour {vmin:.3f}–{vmax:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def worst_pair(row: dict) -> tuple[str, str, float] | None:
    """The stitched (train != test) pair with the lowest mean accuracy: (train, test, accuracy)."""
    pairs = [
        (a, b, cell["accuracy"]["mean"])
        for a, cols in row["matrix"].items()
        for b, cell in cols.items()
        if a != b and "skipped" not in cell and cell.get("accuracy")
    ]
    return min(pairs, key=lambda p: p[2]) if pairs else None


def _mean_acc(cell: dict) -> float | None:
    return None if "skipped" in cell or not cell.get("accuracy") else cell["accuracy"]["mean"]


def reference_vs_methods(summary: dict, reference: str) -> str:
    """``reference`` (the default head) against every other method, per direction (train -> test: a head moved to
    a stronger encoder can beat its own same-encoder accuracy, so both directions are shown), then the mean over
    pairs and the worst pair of each method, and where the reference loses to a single method."""
    names = list(summary[reference]["matrix"])
    methods = [reference, *(m for m in summary if m != reference)]
    pairs = [(a, b) for a in names for b in names if a != b]
    lines = [
        f"Rows: train → test encoder; cells: stitched accuracy (mean over seeds), the best of each row in bold; "
        f"'same' is {reference}'s accuracy on the encoder it was trained on.",
        "",
        "| train → test | same | " + " | ".join(methods) + f" | {reference} − best other |",
        "|---" * (len(methods) + 3) + "|",
    ]
    losses = []
    for a, b in pairs:
        values = {m: _mean_acc(summary[m]["matrix"][a][b]) for m in methods}
        best = max((v for v in values.values() if v is not None), default=None)
        cells = ["n/a" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}") for v in values.values()]
        others = {m: v for m, v in values.items() if m != reference and v is not None}
        ref, rival = values[reference], max(others, key=others.get) if others else None
        gap = "n/a" if ref is None or rival is None else f"{ref - others[rival]:+.3f} ({rival})"
        if ref is not None and rival is not None and ref < others[rival]:
            losses.append(f"{a} → {b} ({rival} {others[rival]:.3f} vs {ref:.3f})")
        same = _mean_acc(summary[reference]["matrix"][a][a])
        lines.append(f"| {a} → {b} | {'n/a' if same is None else f'{same:.3f}'} | " + " | ".join(cells) + f" | {gap} |")
    means, worsts = [], []
    for m in methods:
        values = [v for a, b in pairs if (v := _mean_acc(summary[m]["matrix"][a][b])) is not None]
        counted = f" ({len(values)} of {len(pairs)} pairs)" if len(values) < len(pairs) else ""  # n/a: widths
        means.append(f"{np.mean(values):.3f}{counted}" if values else "n/a")
        worst = worst_pair(summary[m])
        worsts.append(f"{worst[2]:.3f} ({worst[0]} → {worst[1]})" if worst else "n/a")
    lines.append("| **mean over pairs** | | " + " | ".join(means) + " | |")
    lines.append("| **worst pair** | | " + " | ".join(worsts) + " | |")
    won = len(pairs) - len(losses)
    lines += [
        "",
        f"{reference} is at or above every other method in {won} of {len(pairs)} directions"
        + (f"; below in: {'; '.join(losses)}." if losses else "."),
    ]
    return "\n".join(lines)


def summary_figure(path: Path, summary: dict) -> None:
    """One figure per run: same vs stitched accuracy per method (error bars: std over seeds), the worst stitched
    pair of each method marked and named."""
    plt = _pyplot()
    methods = list(summary)
    x = np.arange(len(methods))
    fig, ax = plt.subplots(figsize=(2.0 + 1.4 * len(methods), 4.2))
    width = 0.38
    lows = []
    for offset, group, colour in ((-width / 2, "same", "#4c72b0"), (width / 2, "stitched", "#dd8452")):
        stats = [summary[m][f"{group}_accuracy"] for m in methods]
        means = [s["mean"] if s else np.nan for s in stats]
        stds = [s["std"] if s else 0.0 for s in stats]
        ax.bar(x + offset, means, width, yerr=stds, capsize=4, color=colour, label=group)
        lows += [m - e for m, e in zip(means, stds) if np.isfinite(m)]
    for i, method in enumerate(methods):
        worst = worst_pair(summary[method])
        if worst:
            a, b, value = worst
            ax.plot(
                x[i] + width / 2,
                value,
                marker="v",
                color="#c44e52",
                markersize=9,
                zorder=3,
                label="worst pair" if i == 0 else None,
            )
            ax.annotate(
                f"{a}→{b}\n{value:.3f}",
                (x[i] + width / 2, value),
                textcoords="offset points",
                xytext=(0, -22),
                ha="center",
                fontsize=7,
                color="#c44e52",
            )
            lows.append(value)
    low = min(lows) if lows else 0.0
    ax.set_ylim(max(0.0, low - 0.25 * max(1.0 - low, 0.05) - 0.02), 1.0)  # room for the worst-pair labels
    ax.set_xticks(x, methods, rotation=20, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_title("same-encoder vs stitched (mean ± std over seeds)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
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
    for stale in sorted(set(output_dir.glob("heatmap-*.png")) - {Path(p) for p in plots.values()}):
        stale.unlink()  # an earlier run's method in a reused folder: its figure would read as this run's
        logger.info("removed %s: a heatmap of an earlier run (its method is not in this one)", stale)
    summary_path = output_dir / "summary.png"
    summary_figure(summary_path, summary)
    timing = results["timing_s"]
    data = results["dataset"]
    report = [
        f"# Zero-shot stitching: {config.name}",
        "",
        f"Dataset `{config.dataset.name}`: {data['train']} train / {data['test']} test, {data['num_labels']} classes. "
        f"Encoders: " + ", ".join(f"`{e.id}` ({e.name})" for e in config.encoders) + ". "
        f"{config.anchors.num_anchors} {config.anchors.strategy} anchors (seed {config.anchors.seed}), "
        "shared by all encoders"
        + (
            f", and an alignment set of {config.anchors.alignment} more train inputs (no labels) that only fit the "
            "maps of translation / default. "
            if config.anchors.alignment
            else ". "
        )
        + f"Seeds {config.seeds}; {config.training.num_epochs} epochs, Adam lr {config.training.learning_rate}.",
        "",
        "Same = head evaluated on the encoder it was trained on; stitched = on every other encoder, zero-shot "
        "(mean over pairs, then mean ± std over seeds). Latent columns compare the head's representation r(z) of "
        "the test set under the training encoder and under the other encoder (stitched pairs): the first "
        f"{min(config.latent.max_samples, data['test'])} test rows, Jaccard@{config.latent.k}, the n x n products "
        f"in {config.latent.precision} (latent.precision: float32 moves CKA and mean cosine by ~1e-8 from float64; "
        "docs/performance.md).",
        "",
        summary_table(summary),
        "",
        f"![same vs stitched accuracy per method, worst pair marked]({summary_path.name})",
        "",
    ]
    reference = next((m.name for m in config.methods if m.kind == "default" and m.name in summary), None)
    if reference and len(summary) > 1 and len(config.encoders) > 1:
        report += ["## Default head vs each single bridge, per direction", ""]
        report += [reference_vs_methods(summary, reference), ""]
    report += ["## Full matrices", ""]
    for name, row in summary.items():
        report += [matrix_table(name, row), "", f"![{name}]({Path(plots[name]).name})", ""]
    report += [
        "## Timing",
        "",
        f"setup {timing['setup']:.1f} s, embedding {timing['embedding']:.1f} s, heads {timing['heads']:.1f} s, "
        f"evaluation {timing['evaluation']:.1f} s, total {timing['total']:.1f} s.",
        "",
    ]
    best = results.get("best_head")
    if best:
        report += [
            "## Best head",
            "",
            f"`{best['method']}`, seed {best['seed']}, trained on {best['train_encoder']} (its mean stitched "
            f"accuracy {best['head_stitched_accuracy']:.3f}), written to `{best['folder']}` with its results "
            f"in the card. Rule: {best['rule']}.",
            "",
        ]
    outputs = {
        "results": str(output_dir / "results.json"),
        "report": str(output_dir / "report.md"),
        "plots": plots,
        "summary_plot": str(summary_path),
    }
    write_text_atomic(output_dir / "report.md", "\n".join(report))
    return outputs


@dataclass
class StitchResults:
    """What a stitch run measured, built once at its end and written once (:meth:`write`: ``results.json``).
    Reads like the JSON it becomes (``results["summary"]``)."""

    config: dict
    encoders: dict
    dataset: dict
    anchors: dict
    cache: dict
    runs: list
    processes: int
    timing_s: dict
    summary: dict = field(default_factory=dict)
    best_head: dict | None = None
    outputs: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["best_head"] is None:
            del data["best_head"]
        return data

    def write(self, output_dir: Path) -> None:
        write_text_atomic(Path(output_dir) / "results.json", json.dumps(self.to_dict(), indent=2))
