"""``hf-bridges stitch CONFIG --output-dir DIR``: the zero-shot stitching benchmark."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stitch",
        help="train heads on cached embeddings of each encoder and score them zero-shot on every other encoder",
    )
    parser.add_argument("config", help="stitching config (YAML), e.g. configs/stitch-bbc.yaml")
    parser.add_argument("--output-dir", required=True, help="folder for results.json, report.md and heatmaps")
    parser.add_argument("--cache-dir", default=None,
                        help="embedding cache root (default: $HF_HOME/hf_bridges/embeddings)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the config's seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument("--max-train", type=int, default=None, help="stratified train subset (quick runs)")
    parser.add_argument("--max-test", type=int, default=None, help="stratified test subset (quick runs)")
    parser.add_argument("--anchors", type=int, default=None, help="override anchors.num")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..stitching import load_config, run_stitch
    from ..stitching.report import summary_table

    config = load_config(args.config)
    if args.seeds:
        config.seeds = args.seeds
    if args.epochs:
        config.training.epochs = args.epochs
    if args.max_train:
        config.dataset.max_train = args.max_train
    if args.anchors:
        config.anchors.num = args.anchors
    if args.max_test:
        config.dataset.max_test = args.max_test
    results = run_stitch(config, args.output_dir, cache_dir=args.cache_dir, quiet=args.quiet)
    print(summary_table(results["summary"]))
    timing = results["timing_s"]
    print(f"\ntiming: setup {timing['setup']:.1f} s, embedding {timing['embedding']:.1f} s, "
          f"heads {timing['heads']:.1f} s, evaluation {timing['evaluation']:.1f} s, total {timing['total']:.1f} s")
    print(f"results: {results['outputs']['results']}")
    print(f"report:  {results['outputs']['report']}")
    for name, path in results["outputs"]["plots"].items():
        print(f"plot:    {path}")
    return 0
