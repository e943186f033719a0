"""``hf-bridges index fit|inspect|migrate|evaluate``: keep a vector index, change its encoder
(``hf_bridges.retrieval``).

``inspect --min-retention X`` is the gate a CI uses: exit code 3 when the bridge's expected retention is below X
(1 is kept for errors); ``evaluate --min-retention X`` the same gate on the retention measured on labelled queries.
Push / pull a bridge folder like any head: ``hf-bridges head push|pull``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

GATE_EXIT = 3
# the blends' names on the command line (retrieval.bridge.BLENDS, not imported: the CLI's parser loads no numpy)
BLEND_CHOICES = ("blend-0.25", "blend-0.5", "blend-0.75")
# retrieval.bridge.TRANSLATIONS as typed on the command line (blend-0.5 for "blend 0.5"), and the names of 0.3
TRANSLATION_CHOICES = (
    "best",
    "rotation",
    "prior-ridge",
    "ridge",
    *BLEND_CHOICES,
    "contrastive",
    "attach-auto",
    "attach-orthogonal",
    "attach-affine",
)
# the names of 0.3 (retrieval.bridge.OLD_TRANSLATIONS): accepted until 0.5 with a warning, never listed
OLD_CHOICES = {"prior": "best", "auto": "attach-auto", "orthogonal": "attach-orthogonal", "affine": "attach-affine"}


def translation_choice(name: str) -> str:
    """``--translation``'s type: today's name of ``name``. An old name is read with a warning (said in the CLI's
    words, on stderr) so that argparse's choices, ``--help`` and its errors list only today's names; an unknown one
    is argparse's error, before any encoder loads."""
    import argparse

    if name in OLD_CHOICES:
        print(
            f"hf-bridges index fit: --translation {name} is now {OLD_CHOICES[name]} "
            "(deprecated: the old name is read until hf_bridges 0.5)",
            file=sys.stderr,
        )
        return OLD_CHOICES[name]
    if name not in TRANSLATION_CHOICES:
        from ..modeling.registry import did_you_mean

        raise argparse.ArgumentTypeError(
            f"unknown translation {name!r}{did_you_mean(name, TRANSLATION_CHOICES)}; "
            f"valid: {', '.join(TRANSLATION_CHOICES)}"
        )
    return name


def positive_int(text: str) -> int:
    """``--batch-size`` / ``--num-texts``'s type: a count (0 or below would migrate or fit on nothing)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def retention_threshold(text: str) -> float:
    """``--min-retention``'s type: the gate's finite threshold (float() reads "nan", and NaN passes every gate)."""
    import argparse

    from ..retrieval.inputs import gate_threshold

    try:
        return gate_threshold(float(text))
    except ValueError:  # not a number, or the IndexBridgeError of a NaN / inf one
        raise argparse.ArgumentTypeError(f"{text!r} is not a retention threshold: give a number such as 0.95") from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "index", help="fit, inspect or apply an index bridge (keep the index, change the encoder)"
    )
    actions = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    fit = actions.add_parser("fit", help="fit a bridge from an old and a new encoder on unlabelled texts")
    fit.add_argument("--old", required=True, help="the encoder that built the index (Hub id or folder)")
    fit.add_argument("--new", required=True, help="the encoder that replaces it")
    source = fit.add_mutually_exclusive_group(required=True)
    source.add_argument("--texts", help="a .txt file (one text a line) or a csv/json/jsonl/parquet file")
    source.add_argument("--dataset", help="a registered dataset (hf_bridges.data), e.g. bbc_news")
    fit.add_argument("--text-column", default="text", help="the column of --texts / --dataset holding the texts")
    fit.add_argument("--num-texts", type=positive_int, default=2000, help="use at most this many texts (seeded sample)")
    fit.add_argument(
        "--translation",
        type=translation_choice,
        choices=TRANSLATION_CHOICES,
        default="best",
        help="best (default): the best of the rotation, prior-ridge (ridge shrunk toward a reference map), plain "
        "ridge, the blends and contrastive by the label-free score; or one of them by name (blend-W: W rotation + 1-W plain "
        "ridge); contrastive: the rotation fine-tuned for ranking; attach-*: the heads' attach-time map "
        "(docs/retrieval.md)",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the text sample and the fit (default 0)")
    fit.add_argument("--output", required=True, help="folder to save the bridge into")
    fit.add_argument(
        "--min-retention", type=retention_threshold, help="exit 3 when the expected retention is below this"
    )
    fit.set_defaults(func=run_fit)

    inspect = actions.add_parser("inspect", help="print a bridge's encoders, maps and expected retention; gate it")
    inspect.add_argument("bridge", help="bridge folder or Hub repo id")
    inspect.add_argument("--revision", help="branch, tag or commit of the bridge repo")
    inspect.add_argument("--json", action="store_true", help="print the record as JSON")
    inspect.add_argument(
        "--min-retention", type=retention_threshold, help="exit 3 when the expected retention is below this"
    )
    inspect.add_argument(
        "--side", choices=["query", "migrate"], default="query", help="which side --min-retention gates"
    )
    inspect.add_argument(
        "--bound", choices=["estimate", "low"], default="estimate", help="gate the estimate or the interval's lower end"
    )
    inspect.set_defaults(func=run_inspect)

    migrate = actions.add_parser("migrate", help="move stored vectors (.npy) from the old into the new space")
    migrate.add_argument("bridge", help="bridge folder or Hub repo id")
    migrate.add_argument("input", help="the old vectors, a (n, old width) float .npy file (read memory-mapped)")
    migrate.add_argument("output", help="where to write the new vectors (.npy, float32)")
    migrate.add_argument(
        "--batch-size", type=positive_int, default=65536, help="vectors mapped at a time (default 65536)"
    )
    migrate.add_argument("--revision", help="branch, tag or commit of the bridge repo")
    migrate.set_defaults(func=run_migrate)

    evaluate = actions.add_parser(
        "evaluate", help="measure a bridge's retention on your own labelled queries (query, document pairs); gate it"
    )
    evaluate.add_argument("bridge", help="bridge folder or Hub repo id")
    evaluate.add_argument(
        "--pairs",
        required=True,
        help="a csv/json/jsonl/parquet file of (query, relevant document) rows; a query on several rows has several "
        "relevant documents",
    )
    evaluate.add_argument(
        "--documents", help="distractor documents searched too: a .txt (one a line) or a csv/json/jsonl/parquet file"
    )
    evaluate.add_argument("--query-column", default="query", help="the column of --pairs holding the queries")
    evaluate.add_argument(
        "--document-column", default="document", help="the column of --pairs (and --documents) holding the documents"
    )
    evaluate.add_argument(
        "--old-vectors",
        help="the index's stored vectors of the documents, a (rows, old width) float .npy: one row per --pairs row, "
        "then one per --documents text, in order (default: the bridge's old encoder embeds them)",
    )
    evaluate.add_argument("--k", type=positive_int, default=10, help="the cutoff of Recall@k / nDCG@k (default 10)")
    evaluate.add_argument(
        "--min-retention", type=retention_threshold, help="exit 3 when the measured retention is below this"
    )
    evaluate.add_argument(
        "--side", choices=["query", "migrate"], default="query", help="which side --min-retention gates"
    )
    evaluate.add_argument(
        "--bound", choices=["estimate", "low"], default="estimate", help="gate the estimate or the interval's lower end"
    )
    evaluate.add_argument("--json", action="store_true", help="print the measurement as JSON")
    evaluate.add_argument("--output", help="also write the measurement as JSON to this file")
    evaluate.add_argument("--batch-size", type=positive_int, default=32, help="texts embedded at a time (default 32)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the bootstrap interval (default 0)")
    evaluate.add_argument("--revision", help="branch, tag or commit of the bridge repo")
    evaluate.set_defaults(func=run_evaluate)


TEXT_FILES = (".txt", ".csv", ".json", ".jsonl", ".parquet")


def _texts(args) -> list[str]:
    import random

    if args.dataset:
        from ..data import load_labelled_dataset

        data = load_labelled_dataset(args.dataset)
        texts = [t for split in data.values() for t in split[args.text_column]]
    else:
        hint, flags = " (one text a line in .txt), or --dataset", {args.text_column: "--text-column"}
        texts = _read_columns(args.texts, [args.text_column], "--texts", hint, column_flags=flags)[0]
    texts = list(dict.fromkeys(t for t in texts if t and t.strip()))
    if len(texts) > args.num_texts:
        texts = random.Random(args.seed).sample(texts, args.num_texts)
    return texts


def _read_columns(
    path: str, columns: list[str], flag: str, hint: str = "", suffixes=TEXT_FILES, column_flags: dict | None = None
) -> list[list[str]]:
    """``columns`` of a csv/json/jsonl/parquet file (datasets' readers), or a .txt file's non-empty lines (one
    column); ``column_flags``: the option that names each column, for the error of a missing one."""
    from pathlib import Path

    from ..retrieval import IndexBridgeError

    suffix = Path(path).suffix
    if not Path(path).is_file():
        raise IndexBridgeError(f"{flag} {path}: no such file{' (it is a folder)' if Path(path).is_dir() else ''}")
    if suffix not in suffixes:  # datasets.load_dataset would read the suffix as a Hub id
        raise IndexBridgeError(
            f"{flag} {path}: a {suffix or 'suffix-less'} file is not read; give a {' / '.join(suffixes)} file{hint}"
        )
    if suffix == ".txt":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise IndexBridgeError(f"{flag} {path} is not UTF-8 text ({error.reason}): save it as UTF-8") from None
        return [[line.strip() for line in text.splitlines() if line.strip()]]
    import datasets

    try:
        data = datasets.load_dataset(suffix.lstrip(".").replace("jsonl", "json"), data_files=path, split="train")
    except Exception as error:  # datasets wraps the reader's error (a csv quote left open, not parquet...)
        cause = error.__cause__ or error
        raise IndexBridgeError(
            f"{flag} {path} cannot be read as a {suffix} table ({type(cause).__name__}: {str(cause).strip()[:300]}); "
            "fix the file, or write it again"
        ) from None
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        option = (column_flags or {}).get(missing[0], "the column option")
        raise IndexBridgeError(
            f"{flag} {path} has no column {missing[0]!r} (its columns: {data.column_names}); name the right one with "
            f"{option}"
        )
    return [["" if t is None else str(t) for t in data[c]] for c in columns]


def _gate(bridge, minimum: float | None, side: str = "query", bound: str = "estimate") -> int:
    from ..retrieval import RetentionGateError

    if minimum is None:
        return 0
    try:
        est = bridge.gate(minimum, side=side, bound=bound)
    except RetentionGateError as error:
        print(f"gate FAILED: {error}")
        return GATE_EXIT
    print(f"gate passed: {est} >= {minimum:.3f}")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..retrieval import IndexBridge

    translation = args.translation  # today's name (translation_choice)
    if Path(args.output).exists() and not Path(args.output).is_dir():  # refused before the fit, not after it
        from ..retrieval import IndexBridgeError

        raise IndexBridgeError(f"--output {args.output} exists and is not a folder; choose another path")
    texts = _texts(args)
    if translation.startswith("blend-"):  # the candidate's name in the library: "blend 0.5"
        from ..retrieval.maps import blend_kind

        translation = blend_kind(float(translation.removeprefix("blend-")))
    bridge = IndexBridge.fit(args.old, args.new, texts, translation=translation, seed=args.seed)
    folder = bridge.save_pretrained(args.output)
    print(f"{bridge}\nsaved to {folder}")
    return _gate(bridge, args.min_retention)


def run_inspect(args: argparse.Namespace) -> int:
    from ..retrieval import IndexBridge

    bridge = IndexBridge.from_pretrained(args.bridge, revision=args.revision)
    record = {
        "old_encoder": bridge.old,
        "new_encoder": bridge.new,
        "query_map": bridge.query_map.info,
        "migrate_map": bridge.migrate_map.info,
        "num_pairs": len(bridge.texts or ()),
        "expected_retention": {side: est.to_dict() for side, est in bridge.retention.items()},
        "revision": bridge.revision,
    }
    if args.json:
        print(json.dumps(record, indent=2, default=str))
    else:
        print(bridge)
        for side, est in bridge.retention.items():
            print(f"  {side}: {est}")
    return _gate(bridge, args.min_retention, args.side, args.bound)


def run_migrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from .._io import atomic_path
    from ..retrieval import IndexBridge, IndexBridgeError

    if Path(args.output).is_dir():  # refused before the bridge loads and the vectors are mapped, not after
        raise IndexBridgeError(f"output {args.output} is a folder; give a file path for the new vectors (.npy)")
    old = _stored_vectors(args.input)
    bridge = IndexBridge.from_pretrained(args.bridge, revision=args.revision)
    batches = bridge.migrate_batches(old, args.batch_size)  # shape and width checked before the output is opened
    with atomic_path(args.output) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(old.shape[0], bridge.new["hidden_size"])
        )
        start = 0
        for batch in batches:
            out[start : start + len(batch)] = batch
            start += len(batch)
        out.flush()
        del out
    print(
        f"migrated {old.shape[0]} vectors {bridge.old['hidden_size']}-d -> {bridge.new['hidden_size']}-d into {args.output}"
    )
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..retrieval import IndexBridge, IndexBridgeError, RetentionGateError

    if args.output and Path(args.output).is_dir():  # refused before anything is embedded, not after
        raise IndexBridgeError(f"--output {args.output} is a folder; give a file path for the JSON")
    queries, relevant, documents, rows, given = _labelled(args)
    old = None
    if args.old_vectors:
        old = _stored_vectors(args.old_vectors, "index evaluate")
        if old.shape[0] != given:
            raise IndexBridgeError(
                f"{args.old_vectors} holds {old.shape[0]} vectors for {given} documents: one row per --pairs row "
                "(its document), then one per --documents text, in that order"
            )
        old = old[rows]  # a document given twice is one document: its first row
    bridge = IndexBridge.from_pretrained(args.bridge, revision=args.revision)
    measured = bridge.evaluate(
        queries, documents, relevant, old_vectors=old, k=args.k, seed=args.seed, batch_size=args.batch_size
    )
    record = measured.to_dict()
    if args.output:
        from .._io import write_text_atomic

        write_text_atomic(args.output, json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2) if args.json else measured)
    if args.min_retention is None:
        return 0
    out = sys.stderr if args.json else sys.stdout  # --json: stdout holds the JSON alone
    try:
        measured.check(args.min_retention, side=args.side, bound=args.bound)
    except RetentionGateError as error:
        print(f"gate FAILED: {error}", file=out)
        return GATE_EXIT
    print(f"gate passed: measured {args.side}-side retention >= {args.min_retention:.3f} ({args.bound})", file=out)
    return 0


def _labelled(args) -> tuple[list[str], list[list[int]], list[str], list[int], int]:
    """``(queries, relevant, documents, rows, given)`` from ``--pairs`` (and ``--documents``): one query per distinct
    query text, its relevant documents the ones on its rows; identical documents are one document (``rows``: the
    index of each one's first row among the ``given`` --pairs rows then --documents texts, to pick its stored
    vector)."""
    from ..retrieval import IndexBridgeError

    tables = (".csv", ".json", ".jsonl", ".parquet")
    columns = [args.query_column, args.document_column]
    flags = {args.query_column: "--query-column", args.document_column: "--document-column"}
    pair_queries, pair_documents = _read_columns(args.pairs, columns, "--pairs", suffixes=tables, column_flags=flags)
    for i, (query, document) in enumerate(zip(pair_queries, pair_documents)):
        if not query.strip() or not document.strip():
            raise IndexBridgeError(f"--pairs {args.pairs}: row {i} has an empty query or document")
    extra = []
    if args.documents:
        flags = {args.document_column: "--document-column"}
        extra = _read_columns(args.documents, [args.document_column], "--documents", column_flags=flags)[0]
        extra = [t for t in extra if t.strip()]
    documents, position, rows = [], {}, []
    for row, text in enumerate(pair_documents + extra):
        if text not in position:
            position[text] = len(documents)
            documents.append(text)
            rows.append(row)
    relevant: dict[str, list[int]] = {}
    for query, document in zip(pair_queries, pair_documents):
        relevant.setdefault(query, []).append(position[document])
    if not relevant:
        raise IndexBridgeError(f"--pairs {args.pairs} holds no rows: give one (query, relevant document) row each")
    return list(relevant), list(relevant.values()), documents, rows, len(pair_documents) + len(extra)


def _stored_vectors(path: str, command: str = "index migrate"):
    """The input of ``index migrate``, memory-mapped: a 2-D .npy array (numpy.save's format). Anything else is one
    clear error: np.load would otherwise read a text file as a pickle ("load it unsafely with allow_pickle"), hand
    back an .npz archive (no shape) or a 1-D vector (sliced into batches as if each batch were a vector)."""
    from pathlib import Path

    import numpy as np

    from ..retrieval import IndexBridgeError

    if not Path(path).is_file():
        what = "is a folder" if Path(path).is_dir() else "does not exist"
        raise IndexBridgeError(f"{path} {what}: {command} reads a (rows, width) float .npy file (numpy.save)")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if magic != b"\x93NUMPY":
        kind = "an .npz archive" if magic[:2] == b"PK" else "not a .npy file"
        raise IndexBridgeError(
            f"{path} is {kind}: {command} reads one (rows, width) float array saved with numpy.save(path, vectors)"
        )
    try:
        old = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:  # an object array: not a float matrix
        raise IndexBridgeError(f"{path} holds no float vectors ({error}): save a (rows, width) float array") from None
    if old.ndim != 2 or not np.issubdtype(old.dtype, np.floating):  # integers: quantised codes, not vectors
        one = f" (one vector: save it as shape (1, {old.shape[0]}))" if old.ndim == 1 else ""
        raise IndexBridgeError(
            f"{path} holds a {old.dtype} array of shape {old.shape}: {command} reads one (rows, width) float array{one}"
        )
    return old
