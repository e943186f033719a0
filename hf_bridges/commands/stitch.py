"""``hf-bridges stitch CONFIG --output-dir DIR``: the zero-shot stitching benchmark."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import at_least

if TYPE_CHECKING:
    from ..stitching.config import StitchConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stitch",
        help="train heads on cached embeddings of each encoder and score them zero-shot on every other encoder",
    )
    parser.add_argument("config", help="a preset name (stitch-bbc) or a YAML file")
    parser.add_argument("--output-dir", required=True, help="folder for results.json, report.md and heatmaps")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache root (default: the config's cache_dir, else $HF_HOME/hf_bridges/embeddings)",
    )
    parser.add_argument("--seeds", type=at_least(0), nargs="+", default=None, help="override the config's seeds")
    parser.add_argument("--epochs", type=at_least(1), default=None, help="override training.num_epochs")
    parser.add_argument("--max-train", type=at_least(1), default=None, help="stratified train subset (quick runs)")
    parser.add_argument("--max-test", type=at_least(1), default=None, help="stratified test subset (quick runs)")
    parser.add_argument("--anchors", type=at_least(2), default=None, help="override anchors.num_anchors")
    parser.add_argument(
        "--alignment", type=at_least(0), default=None, help="override anchors.alignment (the alignment set; 0: none)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    best = parser.add_argument_group("best head (config key best_head; off by default)")
    best.add_argument(
        "--save-best-head",
        action="store_true",
        help="write the best relative head (by mean stitched accuracy) to OUTPUT_DIR/best-head/",
    )
    best.add_argument(
        "--push-best-head",
        metavar="REPO_ID",
        default=None,
        help="also push it to this Hub repo (implies --save-best-head)",
    )
    best.add_argument(
        "--best-head-method", default=None, help="best (default) | best-product (>= 2 projections) | a method name"
    )
    best.add_argument("--private", action="store_true", help="create the pushed repo as private")
    best.add_argument("--token", default=None, help="Hub token for the push (default: the stored login / HF_TOKEN)")
    # the run never loads a bridge through the Auto classes: skipping their registration saves the model stack's
    # import (2.5 s of CPU, issue 21.7); the best head imports the bridge class it builds
    parser.set_defaults(func=run)


def apply_run_overrides(config: StitchConfig, args: argparse.Namespace) -> StitchConfig:
    """The quick-run flags (``--seeds --epochs --max-train --max-test --anchors --alignment``) over a loaded config:
    one place for the CLI and the benchmarks that take the same flags. A flag given is applied (``--epochs 0`` was
    skipped as falsy) and checked as the config's own value is."""
    from ..stitching.config import check_numbers

    if args.seeds is not None:
        config.seeds = args.seeds
    if args.epochs is not None:
        config.training.num_epochs = args.epochs
    if args.max_train is not None:
        config.dataset.max_train = args.max_train
    if args.max_test is not None:
        config.dataset.max_test = args.max_test
    if args.anchors is not None:
        config.anchors.num_anchors = args.anchors
    if args.alignment is not None:
        config.anchors.alignment = args.alignment
    check_numbers(config, "command line")
    return config


def run(args: argparse.Namespace) -> int:
    from ..stitching import load_config, run_stitch
    from ..stitching.config import BestHeadSpec, check_best_head
    from ..stitching.report import summary_table

    config = apply_run_overrides(load_config(args.config), args)
    if args.save_best_head or args.push_best_head or args.best_head_method or args.private:
        config.best_head = config.best_head or BestHeadSpec()
        if args.push_best_head:
            config.best_head.repo_id = args.push_best_head
        if args.best_head_method:
            config.best_head.method = args.best_head_method
        if args.private:
            if not config.best_head.repo_id:  # else it silently wrote a best head and pushed nothing
                from ..modeling.registry import ConfigError

                raise ConfigError(
                    "--private makes the pushed repo private, but this run pushes nothing: add --push-best-head "
                    "REPO_ID (or best_head.repo_id in the config)"
                )
            config.best_head.private = True
        check_best_head(config, "--save-best-head/--push-best-head")
    results = run_stitch(config, args.output_dir, cache_dir=args.cache_dir, quiet=args.quiet, hub_token=args.token)
    if results.get("embedding_only"):  # another process of a multi-process launch: the main one writes the outputs
        print(
            f"{results['process']} embedded its shards in {results['timing_s']['embedding']:.1f} s; "
            "process 0 trains the heads and writes the results"
        )
        return 0
    print(summary_table(results["summary"]))
    timing = results["timing_s"]
    print(
        f"\ntiming: setup {timing['setup']:.1f} s, embedding {timing['embedding']:.1f} s, "
        f"heads {timing['heads']:.1f} s, evaluation {timing['evaluation']:.1f} s, total {timing['total']:.1f} s"
        + (f", best head {timing['best_head']:.1f} s" if "best_head" in timing else "")
    )
    print(f"results: {results['outputs']['results']}")
    print(f"report:  {results['outputs']['report']}")
    for path in results["outputs"]["plots"].values():
        print(f"plot:    {path}")
    best = results.get("best_head")
    if best:
        print(
            f"best head: {best['folder']} ({best['method']}, seed {best['seed']}, trained on "
            f"{best['train_encoder']}; its mean stitched accuracy {best['head_stitched_accuracy']:.3f})"
        )
        if "hub" in best:
            print(f"pushed:  {best['hub']['repo_id']} at {best['hub']['url']} (commit {best['hub']['commit']})")
    return 0
