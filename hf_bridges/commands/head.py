"""``hf-bridges head push|pull|attach|inspect``: move stitchable heads between folders, the Hub and encoders."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "head", help="push, pull, attach, inspect, search or recover head-only bridges (docs/heads-and-hub.md)"
    )
    actions = parser.add_subparsers(dest="head_command", metavar="ACTION", required=True)

    def hub_options(p, revision: str | None = "branch, tag or commit sha of the head repo") -> None:
        if revision:
            p.add_argument("--revision", help=revision)
        p.add_argument("--token", help="Hub token (default: the stored login / HF_TOKEN)")
        p.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT)")

    push = actions.add_parser("push", help="upload a head folder (written by save_head) to a Hub repo")
    push.add_argument("folder", help="the head folder (written by save_head; checked before the upload)")
    push.add_argument("repo_id", help="the Hub repo to push to, org/name (created when missing)")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--message", default="Upload bridge head", help="commit message")
    hub_options(push, revision="branch to push to (created from main when missing; default main)")
    push.set_defaults(func=run_push)

    pull = actions.add_parser("pull", help="download a head repo into the HF cache (or --output) and check it")
    pull.add_argument("repo_id", help="the head's Hub repo, org/name")
    pull.add_argument("--output", help="also copy the head files into this folder")
    pull.add_argument("--force", action="store_true", help="download again even if cached")
    hub_options(pull)
    pull.set_defaults(func=run_pull)

    attach = actions.add_parser("attach", help="attach a head (folder or repo) to an encoder and save the model")
    attach.add_argument("head", help="a head folder or Hub repo id (org/name)")
    attach.add_argument("--encoder", required=True, help="Hub id or folder of the new encoder")
    attach.add_argument("--encoder-revision", help="revision of the encoder")
    attach.add_argument("--tokenizer", help="tokenizer to use (default: the encoder's own)")
    attach.add_argument(
        "--subspace-selection",
        choices=["none", "auto", "gate", "hard", "soft"],
        default="none",
        help="label-free choice from the anchors, stored in config.subspace_weights. none (default): the head's "
        "attach rule; gate: an aligned head (the default head) keeps the component subset whose anchor predictions "
        "agree best; auto / hard: a relative head keeps the projections that agree best (soft: weights them)",
    )
    attach.add_argument("--output", help="save the stitched model (save_pretrained) into this folder")
    attach.add_argument("--json", action="store_true", help="print the stitch report as JSON")
    hub_options(attach)
    attach.set_defaults(func=run_attach)

    inspect = actions.add_parser("inspect", help="validate a head (folder or repo) and print what it holds")
    inspect.add_argument("head", help="a head folder or Hub repo id (org/name)")
    inspect.add_argument("--json", action="store_true", help="print bridge_head_config.json")
    inspect.add_argument("--encoder", help="also attach to this encoder and print the label-free expected accuracy")
    hub_options(inspect)
    inspect.set_defaults(func=run_inspect)

    recover = actions.add_parser("recover", help="undo an interrupted save in a folder (a head, or a shared folder)")
    recover.add_argument("folder", help="the head or model folder whose save was interrupted")
    recover.set_defaults(func=run_recover)

    from ..heads.search import register_search  # light: huggingface_hub only

    register_search(actions)


def _pull_kwargs(args) -> dict:
    return {"revision": getattr(args, "revision", None), "token": args.token, "endpoint": args.endpoint}


def run_push(args: argparse.Namespace) -> int:
    from ..heads.hub import push_head_folder

    info = push_head_folder(
        args.folder,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.message,
        endpoint=args.endpoint,
    )
    print(f"pushed {args.folder} to {args.repo_id} (commit {info.oid})")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from ..heads.format import copy_head, read_head
    from ..heads.hub import pull_head

    _check_output(args.output)
    folder = pull_head(args.repo_id, force_download=args.force, **_pull_kwargs(args))
    read_head(folder, source=args.repo_id)
    if args.output:  # as save_head writes: staged, and a folder shared with a model keeps its README.md
        folder = copy_head(folder, args.output)
    print(folder)
    return 0


def _check_output(output: str | None) -> None:
    """``--output`` that is a file fails before any download or attach, not after it ("[Errno 17] File exists")."""
    from pathlib import Path

    from ..modeling.registry import ConfigError

    if output and Path(output).exists() and not Path(output).is_dir():
        raise ConfigError(f"--output {output} is a file, not a folder; pass a folder path (new or existing)")


def run_attach(args: argparse.Namespace) -> int:
    import warnings

    from .. import BridgeForSequenceClassification, BridgeModel
    from ..heads.hub import load_head

    _check_output(args.output)
    head = load_head(args.head, **_pull_kwargs(args))
    cls = BridgeForSequenceClassification if head.has_classifier else BridgeModel
    if head.config["modality"] == "image":
        from ..modeling.modeling_bridge import BridgeForImageClassification

        cls = BridgeForImageClassification
    tokenizer = None
    if args.tokenizer:
        from ..building.loading import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below carries the warning
        model = cls.from_encoder(
            args.encoder,
            head=head,
            tokenizer=tokenizer,
            revision=args.encoder_revision,
            subspace_selection=None if args.subspace_selection == "none" else args.subspace_selection,
        )
    report = model.stitch_report
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    if args.output:
        model.save_pretrained(args.output)  # with its card (heads/cards.py: the head's source and stitch report)
        # with --json, stdout is the JSON alone (`| jq` read the line below as trailing garbage)
        print(f"saved the stitched model to {args.output}", file=sys.stderr if args.json else sys.stdout)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from ..heads.hub import load_head

    head = load_head(args.head, **_pull_kwargs(args))
    config = head.config
    if args.json:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    encoder = config["encoder"]
    if config.get("head_class") == "IndexBridge":  # pushed and pulled as a head, but it holds two maps, no head
        print(f"index bridge {args.head} (format version {config['bridge_head_format_version']}): the files check out")
        _print_files(config)
        print(f"  read it with: hf-bridges index inspect {args.head}")
        return 0
    print(
        f"bridge head {args.head} (format version {config['bridge_head_format_version']}, "
        f"hf_bridges {config.get('hf_bridges_version')})"
    )
    print(
        f"  trained on:   {encoder.get('name_or_path')} ({encoder.get('model_type')}, hidden size "
        f"{encoder.get('hidden_size')}, revision {encoder.get('revision') or encoder.get('commit_hash') or '-'})"
    )
    print(
        f"  modality:     {config['modality']}, pooling {config['pooling']}, max_seq_length {config['max_seq_length']}"
    )
    print(f"  anchors:      {config['num_anchors']} ({'with' if head.anchor_labels else 'without'} labels)")
    if config.get("relative_anchors"):
        extra = config["num_anchors"] - config["relative_anchors"]
        print(f"                {config['relative_anchors']} relative + an alignment set of {extra} (map fit only)")
    print(
        f"  projections:  {', '.join(config['projections'])}; aggregation {config['aggregation']}; "
        f"subspace_norm {config['subspace_norm']}; abs_transform {config['abs_transform']}"
    )
    labels = [head.id2label[i] for i in sorted(head.id2label)]
    print(f"  classifier:   {len(labels)} labels: {', '.join(labels)}" if labels else "  classifier:   none")
    _print_files(config)
    _print_estimate(head, args)
    return 0


def _print_files(config: dict) -> None:
    """One line per checked file (``load_head`` verified every size and sha256)."""
    for name, meta in sorted(config["files"].items()):
        print(f"  {name:<26} {meta.get('size') or 0:>10,} bytes  sha256 {(meta.get('sha256') or '-')[:12]}  ok")


def _print_estimate(head, args) -> None:
    """The stored validation accuracy and, with --encoder, the expected accuracy there (heads/estimate.py)."""
    import warnings

    from .. import BridgeForSequenceClassification
    from ..heads.estimate import stored_accuracy, stored_anchors_in_training

    accuracy = stored_accuracy(head.config, args.head)
    print(
        f"  validation:   accuracy {accuracy:.3f} on the training encoder"
        if accuracy is not None
        else "  validation:   no accuracy stored (save_head(..., metrics={'accuracy': ...}))"
    )
    trained_on = stored_anchors_in_training(head.config, args.head)  # picks the estimate's constants
    print(
        "  anchors:      "
        + {
            True: "among the head's training rows (anchors_in_training: true)",
            False: "new to the head (anchors_in_training: false)",
            None: "not recorded whether the head trained on them (save_head(..., anchors_in_training=...))",
        }[trained_on]
    )
    if getattr(args, "encoder", None) and not head.has_classifier:  # else --encoder did nothing, silently
        print(
            f"  on {args.encoder}: no expected accuracy, the head has no classifier; "
            f"`hf-bridges head attach {args.head} --encoder {args.encoder}` prints its stitch report"
        )
    if getattr(args, "encoder", None) and head.has_classifier:
        from ..heads.estimate import AccuracyEstimate

        cls = BridgeForSequenceClassification
        if head.config["modality"] == "image":
            from ..modeling.modeling_bridge import BridgeForImageClassification as cls
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the lines below say what the estimate says
            report = cls.from_encoder(args.encoder, head=head).stitch_report
        estimate = AccuracyEstimate(**report.estimate)
        print(f"  on {args.encoder}: {estimate.line()}")
        if report.warning:
            print(f"  WARNING: {report.warning}")


def run_recover(args: argparse.Namespace) -> int:
    """Put back the version an interrupted save replaced (``.hf_bridges-previous/``, or an old ``.NAME.old-*``)."""
    import os
    from pathlib import Path

    from .._io import restore_previous
    from ..modeling.registry import HfBridgesError

    folder = Path(args.folder)
    if folder.exists() and not folder.is_dir():  # was "nothing to recover in FILE", exit 0
        raise HfBridgesError(f"{folder} is a file; pass the folder whose save was interrupted (a head or model folder)")
    if folder.is_dir() and restore_previous(folder):
        print(f"restored the previous version in {folder}")
        return 0
    backups = sorted(folder.parent.glob(f".{folder.name}.old-*"))
    if not folder.exists() and backups:
        os.rename(backups[-1], folder)
        print(f"restored {folder} from {backups[-1]}")
        return 0
    if not folder.exists():
        raise HfBridgesError(f"{folder} does not exist and no interrupted save left a backup of it")
    print(f"nothing to recover in {folder}: no interrupted save left anything there")
    return 0
