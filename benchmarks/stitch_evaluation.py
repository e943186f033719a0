"""The evaluation phase of a real `hf-bridges stitch` run next to its predict-only part (issue 21.3).

Runs ``run_stitch`` on a config (embeddings from the usual cache: run the same command once first so that they are
cached) and splits the CPU time of every ``evaluate_pair`` call: the logits (``predict``, the predict-only part),
the representations r(z) for the latent scores, the latent similarity, the classification scores and what is fitted
per anchor pair (the default head's map, the subspace scores, the translation's map). CPU time of this process,
1 thread; absolute seconds on a shared box are noise, the ratios are what to read.

    python benchmarks/stitch_evaluation.py configs/stitch-bbc.yaml --max-train 700 --max-test 200 --anchors 200 \
        --alignment 400 --seeds 0 1 --epochs 3

Runs with the package on PYTHONPATH, so pointing PYTHONPATH at an older checkout measures the code before a change.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


ATTACH_PARTS = ("align_head", "attach_weights", "fit_orthogonal", "translated")
_STACK: list[float] = []  # CPU time of the wrapped calls nested in each open wrapped call


def timed(module, name: str, totals: dict, label=None) -> None:
    """Replace ``module.name`` with a wrapper adding its own CPU time (less that of the wrapped calls it makes) to
    ``totals[label(args, kwargs) or name]``: the parts do not overlap."""
    fn = getattr(module, name)

    def wrapper(*args, **kwargs):
        t = time.process_time()
        _STACK.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.process_time() - t
            nested = _STACK.pop()
            totals[label(args, kwargs) if label else name] += spent - nested
            if _STACK:
                _STACK[-1] += spent

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/stitch-bbc.yaml")
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-test", type=int)
    parser.add_argument("--anchors", type=int)
    parser.add_argument("--alignment", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seeds", type=int, nargs="+")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from hf_bridges import metrics
    from hf_bridges.commands.stitch import apply_run_overrides
    from hf_bridges.stitching import evaluation, load_config, run_stitch

    config = apply_run_overrides(load_config(args.config), args)

    totals: dict = defaultdict(float)
    kind = {True: "representations r(z)", False: "logits (predict)"}
    timed(evaluation, "predict", totals, lambda a, kw: kind[bool(kw.get("represent"))])
    parts = ("latent_similarity", "classification_scores", "align_head", "attach_weights", "fit_orthogonal")
    parts += ("reference_space", "predict_with_representation", "translated", "latent_scores")  # the latter: the memo
    for name in parts:
        if hasattr(evaluation, name):
            timed(evaluation, name, totals)
    evaluate_pair = evaluation.evaluate_pair
    from hf_bridges.heads.translation import fit_orthogonal
    from hf_bridges.stitching.training import predict

    def scored(head, method, train_test, train_anchors, test, test_anchors, labels, latent, cache=None):
        t = time.process_time()
        result = evaluate_pair(head, method, train_test, train_anchors, test, test_anchors, labels, latent, cache)
        totals["evaluation"] += time.process_time() - t
        if "skipped" in result:
            return result
        # the predict-only part: the logits of this head on these rows, in the state the evaluation left it (map
        # fitted, weights chosen), features already cached: what producing the predictions alone costs
        weights = result.get("component_weights") or list((result.get("subspace_weights") or {}).values()) or None
        if method.kind == "translation" and train_test is not test:
            test, test_anchors = mapped(test, test_anchors, train_anchors)
        t = time.process_time()
        predict(head, test, test_anchors, weights, feature_cache=cache)
        totals["predict-only"] += time.process_time() - t
        return result

    evaluation.evaluate_pair = scored
    maps: dict = {}

    def mapped(test, test_anchors, train_anchors):  # the translation baseline's inputs (untimed, done once)
        key = (id(test), id(train_anchors))
        if key not in maps:
            rotation = fit_orthogonal(torch.from_numpy(test_anchors), torch.from_numpy(train_anchors))
            maps[key] = tuple(rotation(torch.from_numpy(x)).float().numpy() for x in (test, test_anchors))
        return maps[key]

    t = time.process_time()
    if "load_metric" in metrics.classification_scores.__code__.co_names:  # the code before: it loads the modules
        metrics.load_metric("accuracy"), metrics.load_metric("f1")  # once per process, before the run
    load = time.process_time() - t
    with tempfile.TemporaryDirectory() as out:
        results = run_stitch(config, out, quiet=True)
    evaluate, predict_only = totals.pop("evaluation"), totals.pop("predict-only")
    calls = len(results.runs)
    print(f"{calls} evaluate_pair calls, {results.dataset['test']} test rows, CPU seconds (1 thread)")
    print(f"(loading the metric modules, once per process, before the run: {load:.2f} s)")
    print("| part of evaluate_pair | CPU s | / predict-only |")
    print("|---|---|---|")
    for name, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds:.3f} | {seconds / predict_only:.2f}x |")
    print(f"| **evaluation (all of evaluate_pair)** | **{evaluate:.3f}** | **{evaluate / predict_only:.2f}x** |")
    print(f"| predict-only (logits of the same heads and rows, features cached) | {predict_only:.3f} | 1x |")
    # what a stitched head needs before its first prediction, whether it is scored or not: the map, the subspace
    # choice, the translation's map (once per anchor pair, shared by every seed and method)
    attach = sum(totals.get(name, 0.0) for name in ATTACH_PARTS)
    print(
        f"attach-time fits ({', '.join(ATTACH_PARTS)}): {attach:.3f} s; evaluation less them: "
        f"{evaluate - attach:.3f} s = {(evaluate - attach) / predict_only:.2f}x predict-only; evaluation / "
        f"(attach + predict-only): {evaluate / (attach + predict_only):.2f}x"
    )
    print(
        f"heads (training, wall): {results.timing_s['heads']:.2f} s; evaluation (wall, with the predict-only "
        f"calls): {results.timing_s['evaluation']:.2f} s"
    )


if __name__ == "__main__":
    main()
