"""Property-based fuzzing of the head-file reader (issue 20): every head folder, however hostile, either loads or
raises one HfBridgesError subclass, within bounded time and memory, and reads nothing outside its folder.

Hypothesis draws, from a valid head: config JSON edits (any JSON value at any field, deleted fields, raw bytes,
deep nesting), safetensors files (random headers: dtypes, shapes, offsets, header lengths), anchors.parquet files
(column types, nulls, row counts, compressions, a decompression bomb), card bytes, and links from each head file
to a well-formed copy outside the folder whose content is marked SECRET. A fixed example budget, derandomized, so
CI runs the same examples every time. Memory is measured per example (tracemalloc peak: Python allocations, where
a bomb's strings land) and for the whole run (``ru_maxrss``); a per-example alarm guards against a hang.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import struct
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import make_encoder, topic_texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from hf_bridges import BridgeForSequenceClassification, HfBridgesError
from hf_bridges._io import sha256_file
from hf_bridges.heads.format import (
    ANCHOR_SPACE_NAME,
    ANCHORS_NAME,
    CARD_NAME,
    CONFIG_NAME,
    HEAD_FILES,
    WEIGHTS_NAME,
    read_head,
)

EXAMPLES = 200  # about 8 s on one quiet core
PEAK_BYTES = 32 << 20  # Python allocations of one read (a legitimate 20-anchor head: well under 1 MiB)
RSS_GROWTH = 1 << 30  # the whole run
ALARM_S = 60  # a hang guard, not a timing assert
SECRET = "SECRET-OUTSIDE-THE-FOLDER"
BOMB_ROWS, BOMB_CHARS = 20, 4 << 20


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer):
    """A valid head, and next to it (outside) a well-formed head whose anchors and card are marked SECRET."""
    root = tmp_path_factory.mktemp("fuzz")
    texts, labels = topic_texts(4, seed=123)
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=texts, anchor_labels=labels, tokenizer=tokenizer, num_labels=5
    )
    head = model.save_head(root / "head")
    outside = root / "outside"
    shutil.copytree(head, outside)
    pq.write_table(
        pa.table({"anchor": [f"{SECRET} {t}" for t in texts], "label": pa.array(labels, pa.int64())}),
        outside / ANCHORS_NAME,
    )
    (outside / CARD_NAME).write_text(f"# {SECRET}\n")
    bomb = root / "bomb.parquet"
    schema = pa.schema([("anchor", pa.string()), ("label", pa.int64())])
    with pq.ParquetWriter(bomb, schema, compression="zstd") as writer:  # one row group at a time: little memory
        for i in range(BOMB_ROWS):
            writer.write_table(pa.table({"anchor": [chr(97 + i) * BOMB_CHARS], "label": [0]}, schema=schema))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"root": root, "head": Path(head), "outside": outside, "bomb": bomb, "rss": rss}


# --------------------------------------------------------------------------------------------- strategies
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8,
)
CONFIG_PATHS = [
    ("bridge_head_format_version",),
    ("num_anchors",),
    ("modality",),
    ("pooling",),
    ("projections",),
    ("aggregation",),
    ("aggregation_dim",),
    ("classifier_hidden_size",),
    ("max_seq_length",),
    ("num_labels",),
    ("id2label",),
    ("relative_anchors",),
    ("aligned",),
    ("aligned_dim",),
    ("tokenizer",),
    ("input_prefix",),
    ("subspace_weights",),
    ("encoder",),
    ("encoder", "hidden_size"),
    ("files",),
    ("files", WEIGHTS_NAME),
    ("files", ANCHORS_NAME, "sha256"),
    ("files", ANCHOR_SPACE_NAME, "size"),
    ("anchor_space",),
]


def _clear(path: Path) -> Path:
    """Remove whatever a drawn edit left at ``path`` (a link, a folder), so a write never goes through a link."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return path


@st.composite
def config_edit(draw):
    path = draw(st.sampled_from(CONFIG_PATHS))
    delete = draw(st.booleans()) and draw(st.booleans())
    value = draw(json_values)

    def apply(folder: Path, world) -> None:
        try:
            config = json.loads((folder / CONFIG_NAME).read_text())
        except (OSError, ValueError, RecursionError):  # an earlier edit broke or replaced it
            return
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            if delete:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        _clear(folder / CONFIG_NAME).write_text(json.dumps(config))

    return f"config {'/'.join(path)} {'deleted' if delete else '= ' + repr(value)[:60]}", apply


@st.composite
def config_bytes(draw):
    kind = draw(st.sampled_from(["binary", "deep", "huge-int"]))
    if kind == "binary":
        data = draw(st.binary(max_size=300))
    elif kind == "deep":
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        data = (b"[" * depth) + (b"]" * depth)
    else:
        data = b'{"library_name": "hf_bridges", "bridge_head_format_version": ' + b"9" * 5000 + b"}"
    return f"config bytes {kind} ({len(data)} B)", lambda folder, world: _clear(folder / CONFIG_NAME).write_bytes(data)


@st.composite
def safetensors_file(draw):
    name = draw(st.sampled_from([WEIGHTS_NAME, ANCHOR_SPACE_NAME]))
    tensors = draw(
        st.dictionaries(
            st.sampled_from(["anchor_embeddings", "classifier.0.weight", "norms.0.weight", "aligned_weight", "x"]),
            st.fixed_dictionaries(
                {
                    "dtype": st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "BOOL", "U8", "XX"]),
                    "shape": st.lists(st.integers(0, 2**40), max_size=3),
                    "data_offsets": st.lists(st.integers(0, 2**20), min_size=2, max_size=2),
                }
            ),
            max_size=3,
        )
    )
    body = draw(st.binary(max_size=2048))
    header = json.dumps(tensors).encode()
    length = draw(st.sampled_from([len(header), len(header) + 7, 2**40, 0]))
    data = struct.pack("<Q", length) + header + body
    return f"{name}: header {tensors} (length {length})"[:200], lambda folder, world: _clear(folder / name).write_bytes(
        data
    )


@st.composite
def real_safetensors(draw):
    """Well-formed files of the wrong content: other dtypes, shapes, no tensors, non-finite values."""
    name = draw(st.sampled_from([WEIGHTS_NAME, ANCHOR_SPACE_NAME]))
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.uint8]))
    shape = draw(st.lists(st.integers(0, 40), max_size=3))
    fill = draw(st.sampled_from([0.0, 1.0, float("nan"), float("inf"), 1e30]))
    key = draw(st.sampled_from(["anchor_embeddings", "classifier.0.weight", "other"]))
    tensors = {} if draw(st.booleans()) and draw(st.booleans()) else {key: torch.full(shape, fill).to(dtype)}

    def apply(folder: Path, world) -> None:
        save_file(tensors, str(_clear(folder / name)))

    return f"{name}: {key} {dtype} {shape} filled {fill}", apply


ARROW_TYPES = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "null": pa.null(),
    "list": pa.list_(pa.float32()),
}


def _values(kind: str, n: int, draw):
    if kind in ("string", "large_string"):
        return draw(st.lists(st.none() | st.text(max_size=30), min_size=n, max_size=n))
    if kind == "binary":
        return draw(st.lists(st.none() | st.binary(max_size=30), min_size=n, max_size=n))
    if kind == "int64":
        return draw(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    if kind == "float64":
        return draw(st.lists(st.none() | st.floats(), min_size=n, max_size=n))
    if kind == "list":
        return draw(st.lists(st.none() | st.lists(st.floats(width=32), max_size=3), min_size=n, max_size=n))
    return [None] * n


@st.composite
def parquet_file(draw):
    if draw(st.integers(0, 9)) == 0:
        return "anchors.parquet: the decompression bomb", lambda folder, world: shutil.copy(
            world["bomb"], _clear(folder / ANCHORS_NAME)
        )
    n = draw(st.sampled_from([0, 1, 19, 20, 21]))
    columns = {}
    for column in draw(st.lists(st.sampled_from(["anchor", "label", "other"]), unique=True, max_size=3)):
        kind = draw(st.sampled_from(sorted(ARROW_TYPES)))
        columns[column] = pa.array(_values(kind, n, draw), type=ARROW_TYPES[kind])
    compression = draw(st.sampled_from(["none", "snappy", "zstd", "gzip"]))

    def apply(folder: Path, world) -> None:
        table = pa.table(columns) if columns else pa.table({})
        pq.write_table(table, _clear(folder / ANCHORS_NAME), compression=compression)

    shown = {k: str(v.type) for k, v in columns.items()}
    return f"anchors.parquet: {n} rows {shown} {compression}", apply


@st.composite
def card(draw):
    kind = draw(st.sampled_from(["bytes", "folder", "head-card"]))
    data = draw(st.binary(max_size=500))

    def apply(folder: Path, world) -> None:
        path = _clear(folder / (CARD_NAME if kind != "head-card" else "bridge_head_card.md"))
        if kind == "folder":
            path.mkdir()
        else:
            path.write_bytes(data)

    return f"card {kind} {data[:40]!r}", apply


@st.composite
def link(draw):
    name = draw(st.sampled_from([*HEAD_FILES, CARD_NAME, "bridge_head_card.md"]))
    target = draw(st.sampled_from(["outside copy", "outside folder", "dangling", "loop", "inside", "relative out"]))

    def apply(folder: Path, world) -> None:
        path = _clear(folder / name)
        if target == "outside copy":
            path.symlink_to(world["outside"] / name)
        elif target == "relative out":
            path.symlink_to(Path("..") / "outside" / name)
        elif target == "outside folder":
            path.symlink_to(world["outside"])
        elif target == "dangling":
            path.symlink_to(world["root"] / "nowhere")
        elif target == "loop":
            path.symlink_to(path)
        else:
            (folder / "sub").mkdir(exist_ok=True)
            source = world["head"] / name
            shutil.copy(source if source.exists() else world["head"] / CARD_NAME, folder / "sub" / name)
            path.symlink_to(Path("sub") / name)

    return f"{name} -> {target}", apply


hostile = st.lists(
    st.one_of(config_edit(), config_bytes(), safetensors_file(), real_safetensors(), parquet_file(), card(), link()),
    min_size=1,
    max_size=3,
)


def _rehash(folder: Path) -> None:
    """Record the drawn files' real checksums (when the config still parses), so they reach the readers."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        for name in list(config["files"]):
            path = folder / name
            if path.is_file():
                config["files"][name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        _clear(folder / CONFIG_NAME).write_text(json.dumps(config))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        pass


def _alarm(signum, frame):
    raise TimeoutError(f"reading one head took over {ALARM_S} s")


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(edits=hostile, rehash=st.booleans())
def test_every_head_folder_loads_or_raises_one_hf_bridges_error(world, edits, rehash, tmp_path_factory):
    folder = tmp_path_factory.mktemp("case") / "head"
    shutil.copytree(world["head"], folder)
    for _, apply in edits:
        apply(folder, world)
    if rehash:
        _rehash(folder)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ALARM_S)
    tracemalloc.start()
    try:
        head = read_head(folder)
    except HfBridgesError as error:
        message = str(error)
        assert message and SECRET not in message
        head = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        shutil.rmtree(folder.parent, ignore_errors=True)
    described = "; ".join(d for d, _ in edits)
    assert peak < PEAK_BYTES, f"{described}: {peak:,} bytes allocated"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - world["rss"]
    assert grown < RSS_GROWTH, f"{described}: the peak resident set grew by {grown:,} bytes since the first example"
    if head is not None:  # nothing from outside the folder made it in
        assert SECRET not in (head.card or ""), described
        assert not any(SECRET in str(a) for a in head.anchors), described


def test_the_bomb_is_a_bomb(world):
    """The fixture's bomb is small on disk and large decompressed (so the fuzz's bound is tested, not assumed)."""
    meta = pq.ParquetFile(world["bomb"]).metadata
    size = sum(meta.row_group(i).column(0).total_uncompressed_size for i in range(meta.num_row_groups))
    assert world["bomb"].stat().st_size < 100_000 and size > BOMB_ROWS * BOMB_CHARS
