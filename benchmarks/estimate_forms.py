"""Which signals should the expected accuracy weigh? Candidate forms, re-scored on stored runs of the benchmark.

Reads the runs of ``benchmarks/accuracy_estimate.py`` (JSON + the ``.npz`` of per-point evidence next to it), and
for each kind of head scores forms of ``expected = a - w_c (a - c) - w_d (a - d) + w_g g - w_s s`` (c, d, g: the
package's calibrated agreement, calibrated confidence and difference of confidences; s: the *separation gap*, each
side's mean top-2 logit margin over its standard deviation, training side minus new side, free of the logits'
scale). The weights are least squares over the paired triples of the three first tasks (MNIST out of sample), as
the package's constants; each form is scored over all paired triples, leaving each task out, per task (MAE and
Spearman within the real pairs) and with its 95 % interval (bootstrap over the points + the fit's residual), the
worst triple printed next to the mean. ``cd`` with the package's constants reproduces the package's estimate (checked
on every row). Used to re-measure the separation gap for heads whose anchors are new to them (docs/estimate.md,
'Tried and left out')::

    python benchmarks/estimate_forms.py outputs/regimes/held_out.json outputs/regimes/in_training.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import warnings

import numpy as np
import torch

from hf_bridges.heads.estimate import BOOTSTRAP, CONSTANTS, AgreementPoints, Z, _temperature

SIGNALS = {
    "c": "calibrated agreement",
    "d": "calibrated confidence",
    "g": "difference of confidences",
    "s": "separation",
}
FORMS = ("cd", "cdg", "cds", "cdgs")
FIT_TASKS = ("bbc_news", "rotten_tomatoes", "fashion_mnist")


def benchmark():
    """benchmarks/accuracy_estimate.py as a module (its loaders and paired rows)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accuracy_estimate.py")
    spec = importlib.util.spec_from_file_location("accuracy_estimate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def separation(margin: torch.Tensor) -> torch.Tensor:
    """Mean top-2 logit margin over its standard deviation, along the last dimension."""
    return margin.mean(-1) / margin.std(-1).clamp_min(1e-12)


class Evidence:
    """Per-point values of one triple (as hf_bridges.heads.estimate.summarise computes them) and the bootstrap draws
    the package uses, so that every form's interval is computed the same way."""

    def __init__(self, points: AgreementPoints, a: float, seed: int = 0):
        src, new = points.source_logits.double(), points.new_logits.double()
        n = src.shape[0]
        temperature = _temperature(src, a)
        p_new = new.softmax(-1)
        self.a = a
        self.points = {
            "c": (src / temperature).softmax(-1).gather(1, p_new.argmax(-1, keepdim=True)).squeeze(1),
            "d": (new / temperature).softmax(-1).max(-1).values,
            "g": src.softmax(-1).max(-1).values - p_new.max(-1).values,
        }
        self.margins = [x.topk(2, -1).values.diff(dim=-1).neg().squeeze(-1) for x in (src, new)]
        self.draws = torch.randint(n, (BOOTSTRAP, n), generator=torch.Generator().manual_seed(seed + 1))
        self.means = {k: float(v.mean()) for k, v in self.points.items()}
        self.means["s"] = float(separation(self.margins[0]) - separation(self.margins[1]))

    def estimate(self, w: dict[str, float], residual_sd: float) -> tuple[float, float, float]:
        a = self.a
        expected = a - w["c"] * (a - self.means["c"]) - w["d"] * (a - self.means["d"]) + w["g"] * self.means["g"]
        expected -= w["s"] * self.means["s"]
        combined = sum(w[k] * self.points[k] for k in "cdg")[self.draws].mean(1)
        if w["s"]:
            combined = combined - w["s"] * (
                separation(self.margins[0][self.draws]) - separation(self.margins[1][self.draws])
            )
        half = Z * float(np.sqrt(float(combined.std()) ** 2 + residual_sd**2))
        clip = lambda v: min(max(v, 0.0), 1.0)
        return clip(expected), clip(expected - half), clip(expected + half)


def design(rows: list[dict], evidence: dict, form: str) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the least squares (a - c, a - d, g, -s as the form asks) and the target a - measured."""
    a = np.array([r["source_accuracy"] for r in rows])
    e = [evidence[id(r)].means for r in rows]
    column = {
        "c": a - np.array([m["c"] for m in e]),
        "d": a - np.array([m["d"] for m in e]),
        "g": -np.array([m["g"] for m in e]),
        "s": np.array([m["s"] for m in e]),
    }
    return np.stack([column[k] for k in form], 1), a - np.array([r["measured"] for r in rows])


def fit(rows: list[dict], evidence: dict, form: str) -> tuple[dict[str, float], float]:
    x, y = design(rows, evidence, form)
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    weights = dict.fromkeys("cdgs", 0.0) | {k: float(v) for k, v in zip(form, w, strict=True)}
    return weights, float(np.sqrt(((y - x @ w) ** 2).mean()))


def scored(rows: list[dict], evidence: dict, weights: dict[str, float], residual_sd: float) -> list[dict]:
    out = []
    for r in rows:
        expected, low, high = evidence[id(r)].estimate(weights, residual_sd)
        out.append(dict(r, estimate=expected, low=low, high=high))
    return out


def figures(rows: list[dict], tasks: list[str], spearman) -> dict:
    err = np.array([r["estimate"] - r["measured"] for r in rows])
    real = [r for r in rows if r["kind"] == "real"]
    worst = max(rows, key=lambda r: abs(r["estimate"] - r["measured"]))
    out = {
        "mae": float(np.abs(err).mean()),
        "bias": float(err.mean()),
        "coverage": float(np.mean([r["low"] <= r["measured"] <= r["high"] for r in rows])),
        "spearman_all": spearman([r["estimate"] for r in rows], [r["measured"] for r in rows]),
        "spearman_real": spearman([r["estimate"] for r in real], [r["measured"] for r in real]),
        "fit_tasks_mae": float(np.mean([abs(r["estimate"] - r["measured"]) for r in rows if r["task"] in FIT_TASKS])),
        "worst": f"{worst['task']} {worst['head']} -> {worst['encoder']}: estimated {worst['estimate']:.3f}, "
        f"measured {worst['measured']:.3f}",
    }
    for task in tasks:
        part = [r for r in rows if r["task"] == task]
        out[f"{task} mae"] = float(np.mean([abs(r["estimate"] - r["measured"]) for r in part]))
        real = [r for r in part if r["kind"] == "real"]
        out[f"{task} spearman_real"] = spearman([r["estimate"] for r in real], [r["measured"] for r in real])
    return out


def print_figures(label: str, f: dict, tasks: list[str]) -> None:
    print(
        f"  {label:<22} MAE {100 * f['mae']:.2f}  bias {100 * f['bias']:+.2f}  cov {100 * f['coverage']:.1f}%  "
        f"rho {f['spearman_all']:.3f} / {f['spearman_real']:.3f}  three first tasks {100 * f['fit_tasks_mae']:.2f}"
    )
    print(
        "  " + " " * 22 + "  ".join(f"{t} {100 * f[f'{t} mae']:.2f} (rho {f[f'{t} spearman_real']:.2f})" for t in tasks)
    )
    print("  " + " " * 22 + f"worst: {f['worst']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="JSON of benchmarks/accuracy_estimate.py runs (.npz next to each)")
    parser.add_argument("--output", help="write the figures to this JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    bench = benchmark()
    results = {}
    for path in args.runs:
        with open(path) as handle:
            run = json.load(handle)
        kind = run["args"]["anchors_in_training"]
        store = bench.load_points(path.removesuffix(".json") + ".npz")
        rows = [
            dict(r, source_accuracy=r["source_accuracy_paired"], measured=r["measured_paired"])
            for r in run["rows"]
            if r["kind"] != "same"  # the paired design, as the benchmark's
        ]
        tasks = sorted({r["task"] for r in rows}, key=[*FIT_TASKS, "mnist_5k"].index)
        evidence = {id(r): Evidence(store[bench.row_key(r)], r["source_accuracy"]) for r in rows}
        k = CONSTANTS[kind]  # check: the package's form and constants give the package's estimate
        package = dict(c=k.agreement, d=k.confidence, g=k.confidence_gap, s=0.0)
        for r in rows:
            expected = bench.summarise(store[bench.row_key(r)], r["source_accuracy"], anchors_in_training=kind)
            assert abs(evidence[id(r)].estimate(package, k.residual_sd)[0] - expected.expected) < 1e-9
        separations = np.array([evidence[id(r)].means["s"] for r in rows])
        print(
            f"\n[anchors_in_training={kind}] {len(rows)} paired triples; separation gap mean {separations.mean():.3f}"
            f" (sd {separations.std():.3f})"
        )
        print_figures(
            "package's constants", figures(scored(rows, evidence, package, k.residual_sd), tasks, bench.spearman), tasks
        )
        results[str(kind)] = {}
        for form in FORMS:
            weights, sd = fit([r for r in rows if r["task"] in FIT_TASKS], evidence, form)
            own = figures(scored(rows, evidence, weights, sd), tasks, bench.spearman)
            loto = []
            for task in tasks:
                w_t, sd_t = fit([r for r in rows if r["task"] != task], evidence, form)
                loto += scored([r for r in rows if r["task"] == task], evidence, w_t, sd_t)
            left_out = figures(loto, tasks, bench.spearman)
            print(
                f"\n form {form} ({', '.join(SIGNALS[s] for s in form)}): "
                + "  ".join(f"w_{s} {weights[s]:.3f}" for s in form)
                + f"  residual {sd:.4f}"
            )
            print_figures("fitted on 3 tasks", own, tasks)
            print_figures("leave one task out", left_out, tasks)
            results[str(kind)][form] = {
                "weights": weights,
                "residual_sd": sd,
                "fitted": own,
                "leave_one_task_out": left_out,
            }
    if args.output:
        with open(args.output, "w") as handle:
            json.dump({"runs": args.runs, "forms": results}, handle, indent=2)
        print("wrote", args.output)


if __name__ == "__main__":
    main()
