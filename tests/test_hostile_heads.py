"""Hostile heads (issue 20): a head comes from strangers, so reading and attaching one is bounded by what its files
legitimately hold, never reads or publishes a file outside its folder, survives a full disk and a torn anchor cache,
and every failure is one accurate HfBridgesError line.

Items: 1 (decompression bomb, long anchors, anchor-count limit), 3 (links out of the folder, on read and push),
4 (full disk: anchor cache and save_head, on a real 256 KiB tmpfs), 5 (anchor-cache integrity, torn reads, 3
processes), 6 (misleading messages about head files and a Hub HTTP 500), 7 (raw exceptions on head files), 8 (int /
bool weights, bad anchor labels), 9 (file modes).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import make_encoder, topic_texts
from hub_server import TOKEN, hub_fixture
from safetensors.torch import load_file, save_file

from hf_bridges import BridgeForSequenceClassification
from hf_bridges._io import current_umask, sha256_file
from hf_bridges.cli import main
from hf_bridges.heads.anchor_cache import AnchorCache
from hf_bridges.heads.files import MAX_ANCHORS, HeadSaveError, max_anchor_chars
from hf_bridges.heads.format import (
    ANCHOR_SPACE_NAME,
    ANCHORS_NAME,
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    HeadFormatError,
    read_head,
)

hub = pytest.fixture(hub_fixture)
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def model(tokenizer):
    texts, labels = topic_texts(4, seed=123)
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=texts, anchor_labels=labels, tokenizer=tokenizer, num_labels=5
    )


@pytest.fixture(scope="module")
def head_dir(model, tmp_path_factory):
    return model.save_head(tmp_path_factory.mktemp("hostile") / "head")


@pytest.fixture
def head(head_dir, tmp_path):
    return Path(shutil.copytree(head_dir, tmp_path / "head"))


def edit_config(folder: Path, change) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    change(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


def rehash(folder: Path) -> None:
    """Record the files' real checksums: a hostile head is well-formed, not corrupted."""

    def change(config):
        for name in config["files"]:
            config["files"][name] = {"sha256": sha256_file(folder / name), "size": (folder / name).stat().st_size}

    edit_config(folder, change)


def write_anchors(folder: Path, anchors, labels=None, anchor_type=None, **options) -> None:
    columns = {"anchor": pa.array(anchors, type=anchor_type)}
    if labels is not None:
        columns["label"] = pa.array(labels)
    pq.write_table(pa.table(columns), folder / ANCHORS_NAME, **options)
    rehash(folder)


def attach(head, encoder, **kwargs):
    return BridgeForSequenceClassification.from_encoder(encoder, head=str(head), **kwargs)


# ------------------------------------------------------------------------------------------ 1: bounded anchors
def test_decompression_bomb_is_refused_before_it_is_read(head):
    """The first landing read 20 strings of 10 MiB from a 1.8 KB file (3 min 25 s, 4.5 GB, then an abort)."""
    write_anchors(head, ["a" * (2 << 20)] * 20, compression="zstd")
    assert (head / ANCHORS_NAME).stat().st_size < 20_000  # a small file ...
    with pytest.raises(HeadFormatError, match=r"anchors.parquet decompresses to 41,9\d\d,\d\d\d bytes, over the"):
        read_head(head)  # ... refused from its footer


def test_long_anchor_texts_are_cut_to_what_can_reach_the_model(head, model, tmp_path, tokenizer):
    limit = max_anchor_chars(model.config.max_seq_length)
    texts = list(model.config.anchors)
    texts[3] = "market " * (limit // 7 + 500)  # longer than any token sequence the head can see
    write_anchors(head, texts, list(model.config.anchor_labels))
    read = read_head(head)
    assert len(read.anchors[3]) == limit and read.anchors[3] == texts[3][:limit]
    # save_head keeps only those characters too, so what it writes is what a reader accepts
    longer = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=texts, tokenizer=tokenizer, num_labels=5
    )
    saved = read_head(longer.save_head(tmp_path / "long"))
    assert len(saved.anchors[3]) == max_anchor_chars(longer.config.max_seq_length)


def test_the_anchor_count_limit_is_one_number(head):
    from hf_bridges.heads.validation import validate_head_config

    assert MAX_ANCHORS == 1 << 16
    edit_config(head, lambda c: c.update(num_anchors=MAX_ANCHORS + 1))
    with pytest.raises(HeadFormatError, match=rf"'num_anchors' must be an integer in \[1, {MAX_ANCHORS}\]"):
        read_head(head)
    config = json.loads((head / CONFIG_NAME).read_text())
    config["num_anchors"] = MAX_ANCHORS
    validate_head_config(config, "head")  # the limit itself is a valid head


# ---------------------------------------------------------------------------------- 3: links out of the folder
@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "token"
    path.write_text("hf_SECRET_TOKEN")
    return path


def test_a_card_linked_out_of_the_folder_is_not_read(head, secret):
    (head / CARD_NAME).unlink()
    (head / CARD_NAME).symlink_to(secret)
    with pytest.raises(HeadFormatError, match=rf"README.md is a link to {secret}, outside the head folder"):
        read_head(head)
    (head / CARD_NAME).unlink()  # a link inside the folder is fine
    (head / "card.md").write_text("# the card")
    (head / CARD_NAME).symlink_to("card.md")
    assert read_head(head).card == "# the card"


def test_a_data_file_linked_out_of_the_folder_is_not_read(head, tmp_path):
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(head / ANCHORS_NAME, outside)
    (head / ANCHORS_NAME).symlink_to(outside)
    with pytest.raises(HeadFormatError, match="anchors.parquet is a link to .*elsewhere.parquet, outside the head"):
        read_head(head)


def test_head_push_never_publishes_a_linked_secret(hub, head, secret, capsys):
    """The first landing returned 0 and the token became the repo's README on the Hub."""
    (head / CARD_NAME).unlink()
    (head / CARD_NAME).symlink_to(secret)
    code = main(["head", "push", str(head), "alice/leak", "--token", TOKEN, "--endpoint", hub.endpoint])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"README.md is a link to {secret}, outside the head folder" in err
    assert "alice/leak" not in hub.state.repos  # refused before anything was created or sent
    served = [content for repo in hub.state.repos.values() for c in repo.commits.values() for content in c.values()]
    assert not any(b"hf_SECRET_TOKEN" in content for content in served)


def test_push_head_folder_refuses_a_linked_card_it_does_not_read(hub, head, secret):
    """read_head reads one card; the push uploads both names: bridge_head_card.md linked out is refused too."""
    from hf_bridges.heads.hub import push_head_folder

    (head / "bridge_head_card.md").symlink_to(secret)
    with pytest.raises(HeadFormatError, match="bridge_head_card.md is a link to"):
        push_head_folder(head, "alice/leak2", token=TOKEN, endpoint=hub.endpoint)


# ------------------------------------------------------------------------------------------------ 4: full disk
@pytest.fixture
def full_disk(tmp_path):
    """A real 256 KiB tmpfs (root only), or a skip: see test_hostile_inputs for the RLIMIT_FSIZE variant."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int = 512) -> None:
    """Fill the file system under ``folder`` until fewer than ``leave`` bytes are free."""
    with open(folder / "filler", "wb", buffering=0) as handle:  # unbuffered: nothing left to flush on close
        try:
            while True:
                handle.write(b"\0" * 1024)
        except OSError:
            pass
    stats = os.statvfs(folder)
    assert stats.f_bavail * stats.f_frsize < max(leave, 4096)


def test_a_full_disk_under_the_anchor_cache_costs_a_warning_not_the_attach(head, full_disk, tiny_encoder_dir, caplog):
    """The first landing failed the attach with safetensors' raw ``SafetensorError: No space left on device``."""
    cache = full_disk / "anchors"
    cache.mkdir()
    fill(full_disk)
    with caplog.at_level(logging.WARNING, logger="hf_bridges"):
        model = attach(head, tiny_encoder_dir, anchor_cache=cache)
    assert model.stitch_report is not None
    assert "could not write the anchor cache" in caplog.text
    assert not [p for p in cache.iterdir() if p.suffix == ".safetensors" or p.name.endswith(".tmp")]


def test_save_head_on_a_full_disk_names_the_folder_and_keeps_the_old_head(model, full_disk):
    target = full_disk / "head"
    model.save_head(target, card=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    fill(full_disk)
    with pytest.raises(HeadSaveError, match=rf"could not write the head to {target} .*previous head there is intact"):
        model.save_head(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert read_head(target).config["num_anchors"] == 20
    assert [p.name for p in full_disk.iterdir() if p.name.startswith(".")] == []  # no staging left


# ---------------------------------------------------------------------------------- 5: anchor-cache integrity
def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.iterdir() if p.suffix == ".safetensors"]
    return entry


@pytest.mark.parametrize("damage", ["scaled", "zeroed", "truncated"])
def test_a_damaged_cache_entry_is_dropped_and_embedded_again(head, tiny_encoder_dir, tmp_path, caplog, damage):
    """The first landing read 20 of 640 floats multiplied by -3 on every later attach (score 1.0 -> 0.626)."""
    cache = tmp_path / "cache"
    clean = attach(head, tiny_encoder_dir, anchor_cache=False)
    attach(head, tiny_encoder_dir, anchor_cache=cache)
    entry = _entry(cache)
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    else:  # well-formed safetensors, other numbers (the header is unchanged)
        tensors = load_file(entry)
        emb = tensors["embeddings"].clone()
        emb.view(-1)[:20] *= -3 if damage == "scaled" else 0
        metadata = __import__("safetensors").safe_open(str(entry), "pt").metadata()
        save_file({"embeddings": emb}, str(entry), metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="hf_bridges"):
        again = attach(head, tiny_encoder_dir, anchor_cache=cache)
    assert f"anchor cache entry {entry} is bad" in caplog.text and "embedded again" in caplog.text
    torch.testing.assert_close(again.anchor_embeddings, clean.anchor_embeddings, rtol=0, atol=0)
    assert again.stitch_report.score == pytest.approx(clean.stitch_report.score)
    assert AnchorCache(cache).get(entry.stem, 20) is not None  # rewritten whole


def test_cache_entries_get_the_package_file_mode(head, tiny_encoder_dir, tmp_path):
    """Item 9: entries were 0600 (safetensors' save_file), every other file 0644."""
    cache = tmp_path / "cache"
    attach(head, tiny_encoder_dir, anchor_cache=cache)
    assert _entry(cache).stat().st_mode & 0o777 == 0o666 & ~current_umask()
    for path in head.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask(), path.name


@pytest.mark.subprocess
def test_an_attach_killed_while_writing_the_cache_leaves_no_entry(head, tiny_encoder_dir, tmp_path, caplog):
    """kill -9 between the entry's write and its rename: no entry, the next attach embeds and writes it whole."""
    cache = tmp_path / "cache"
    script = (
        "from hf_bridges import BridgeForSequenceClassification as B\n"
        f"B.from_encoder({tiny_encoder_dir!r}, head={str(head)!r}, anchor_cache={str(cache)!r})\n"
    )
    env = {**os.environ, "HF_BRIDGES_FAULT_AT": "anchor_cache:written", "HF_BRIDGES_FAULT_SIGNAL": "KILL"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert not [p for p in cache.iterdir() if p.suffix == ".safetensors"]  # only the killed writer's temp file
    with caplog.at_level(logging.WARNING, logger="hf_bridges"):
        again = attach(head, tiny_encoder_dir, anchor_cache=cache)
    assert "is bad" not in caplog.text
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []  # the dead writer's temp file removed
    clean = attach(head, tiny_encoder_dir, anchor_cache=False)
    torch.testing.assert_close(again.anchor_embeddings, clean.anchor_embeddings, rtol=0, atol=0)
    assert AnchorCache(cache).get(_entry(cache).stem, 20) is not None


PROBE = """
import sys, json, torch
sys.path.insert(0, {tests!r})
from hf_bridges import BridgeForSequenceClassification
torch.set_num_threads(1)
rows = []
for _ in range(3):
    model = BridgeForSequenceClassification.from_encoder({encoder!r}, head={head!r}, anchor_cache={cache!r})
    batch = model.tokenize(["market stock bank", "film music star"])
    with torch.no_grad():
        rows.append(model(**batch).logits.tolist())
print(json.dumps(rows))
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_three_processes_attaching_through_a_torn_entry_agree(head, tiny_encoder_dir, tmp_path, one_thread):
    """The first landing: 2 of 18 attaches gave other logits while an entry was truncated (readers took no lock).
    Then, 1 run in 3: the entry checked, then used as a view of its memory map, whose second half the truncation
    zeroed after the check (a reader now copies before it checks). One thread here as in the probes."""
    cache = tmp_path / "cache"
    reference = attach(head, tiny_encoder_dir, anchor_cache=False)
    with torch.no_grad():
        expected = reference(**reference.tokenize(["market stock bank", "film music star"])).logits
    attach(head, tiny_encoder_dir, anchor_cache=cache)
    entry = _entry(cache)
    whole = entry.read_bytes()
    script = PROBE.format(tests=str(TESTS), encoder=tiny_encoder_dir, head=str(head), cache=str(cache))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(3)
    ]
    tears = 0
    while any(p.poll() is None for p in procs):  # tear the entry in place (no lock, like a crashed writer)
        try:
            with open(entry, "r+b") as handle:
                handle.truncate(len(whole) // 2)
            tears += 1
        except FileNotFoundError:  # dropped by a reader, not yet written again
            pass
        time.sleep(0.05)
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outs]
    for out, _ in outs:
        for logits in json.loads(out.decode().strip().splitlines()[-1]):
            torch.testing.assert_close(torch.tensor(logits), expected, rtol=0, atol=1e-6)
    assert tears > 0


# ------------------------------------------------------------------------ 6, 7, 8: accurate one-line errors
def _anchors(change):
    def apply(folder: Path) -> None:
        table = pq.read_table(folder / ANCHORS_NAME)
        anchors, labels = table.column("anchor").to_pylist(), table.column("label").to_pylist()
        write_anchors(folder, *change(anchors, labels))

    return apply


def _weights(change):
    def apply(folder: Path) -> None:
        state = load_file(folder / WEIGHTS_NAME)
        save_file(change(state), str(folder / WEIGHTS_NAME))
        rehash(folder)

    return apply


def _anchor_space(change):
    def apply(folder: Path) -> None:
        space = load_file(folder / ANCHOR_SPACE_NAME)["anchor_embeddings"]
        save_file({"anchor_embeddings": change(space)}, str(folder / ANCHOR_SPACE_NAME))
        rehash(folder)

    return apply


def _config(change):
    return lambda folder: edit_config(folder, change)


HOSTILE = {
    # 6: misleading messages ("check that the tokenizer belongs ...", "tokenizer files are probably missing", ...)
    "pooling evil": (_config(lambda c: c.update(pooling="evil")), r"field 'pooling' must be one of \['cls'"),
    "relative_anchors 999": (
        _config(lambda c: c.update(relative_anchors=999)),
        r"field 'relative_anchors' must be null or an integer in \[1, num_anchors=20\], got 999",
    ),
    "modality 42": (_config(lambda c: c.update(modality=42)), r"field 'modality' must be one of \['features', 'image'"),
    "null anchors": (_anchors(lambda a, la: ([None] * 20, la)), "anchors of a text head are strings, got null"),
    "one null anchor": (
        _anchors(lambda a, la: ([*a[:5], None, *a[6:]], la)),
        r"1 of the 20 anchors are null or empty \(row 5: None\)",
    ),
    "empty anchors": (_anchors(lambda a, la: ([" "] * 20, la)), "20 of the 20 anchors are null or empty"),
    "numeric anchors": (_anchors(lambda a, la: (list(range(20)), la)), "anchors of a text head are strings, got int64"),
    "binary anchors": (_anchors(lambda a, la: ([b"\x00\x01"] * 20, la)), "text head are strings, got binary"),
    "weights without tensors": (_weights(lambda s: {}), "holds no tensors .*not a head without a classifier"),
    "sha256 of the wrong type": (
        _config(lambda c: c["files"][ANCHORS_NAME].update(sha256=5)),
        r"field 'files.anchors.parquet' must be an object \{\"sha256\": 64 hex digits",
    ),
    # 7: raw exceptions
    "files.<name> as a string": (
        _config(lambda c: c["files"].update({WEIGHTS_NAME: "abc"})),
        r"field 'files.bridge_head.safetensors' must be an object .*got 'abc' \(str\)",
    ),
    "id2label keys not ints": (
        _config(lambda c: c.update(id2label={k: v for k, v in zip("abcde", "vwxyz")})),
        r"field 'id2label' must be an object mapping label ids \"0\"..\"4\" to names",
    ),
    "id2label as a list": (
        _config(lambda c: c.update(id2label=list("abcde"))),
        r"field 'id2label' must be .*\(list\)",
    ),
    "100k-deep JSON": (
        lambda folder: (folder / CONFIG_NAME).write_text("[" * 100_000 + "]" * 100_000),
        r"bridge_head_config.json is corrupted \(nested too deeply\)",
    ),
    # 8: silently accepted
    "int64 weights": (_weights(lambda s: {k: v.to(torch.int64) for k, v in s.items()}), "of dtype I64; head weights"),
    "bool weights": (_weights(lambda s: {k: v > 0 for k, v in s.items()}), "of dtype BOOL; head weights are floating"),
    "out-of-range labels": (
        _anchors(lambda a, la: (a, [99] * 20)),
        r"20 anchor label\(s\) out of range \(row 0: 99\); labels must be in \[0, 4\]",
    ),
    "negative labels": (_anchors(lambda a, la: (a, [-1] * 20)), r"out of range \(row 0: -1\)"),
    "string labels": (
        _anchors(lambda a, la: (a, ["x"] * 20)),
        "column 'label' must hold integer class ids, got string",
    ),
    "float labels": (_anchors(lambda a, la: (a, [0.5] * 20)), "column 'label' must hold integer class ids, got double"),
    "int32 anchor space": (
        _anchor_space(lambda t: t.to(torch.int32)),
        "anchor_space.safetensors: tensor 'anchor_embeddings' is of dtype int32; an anchor space is floating point",
    ),
    "bool anchor space": (_anchor_space(lambda t: t > 0), "tensor 'anchor_embeddings' is of dtype bool"),
    "weights of another model": (
        _weights(lambda s: {"encoder.layer.0.weight": torch.zeros(3)}),
        r"field 'num_labels' is 5 but bridge_head.safetensors holds no classifier tensors \(it holds \['encoder",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_head_files_get_one_accurate_error(head, tiny_encoder_dir, case):
    damage, message = HOSTILE[case]
    damage(head)
    with pytest.raises(HeadFormatError, match=message) as caught:
        attach(head, tiny_encoder_dir, anchor_cache=False)
    text = str(caught.value)
    assert "\n" not in text and "tokenizer" not in text and "attach it to a 42" not in text
    assert "has no classifier" not in text and "is corrupted (its sha256" not in text


def test_a_card_that_is_not_utf8_does_not_stop_the_head(head, tiny_encoder_dir, caplog):
    (head / CARD_NAME).write_bytes("caf\xe9 au lait".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="hf_bridges"):
        read = read_head(head)
    assert read.card == "caf\ufffd au lait" and "README.md is not UTF-8" in caplog.text
    attach(head, tiny_encoder_dir, anchor_cache=False)


def test_an_oversized_card_is_skipped(head, caplog):
    (head / CARD_NAME).write_text("x" * (2 << 20))
    with caplog.at_level(logging.WARNING, logger="hf_bridges"):
        assert read_head(head).card is None
    assert "the card is not read" in caplog.text


# ------------------------------------------------------------------------------------ 6: Hub HTTP 500 on weights
@pytest.fixture
def no_wait(monkeypatch):
    """huggingface_hub's retry delays (1, 2, 4 s...): the retries still run."""
    import time

    monkeypatch.setattr(time, "sleep", lambda seconds: None)


def test_a_hub_server_error_is_named_and_a_transient_one_retried(hub, head_dir, tmp_path, capsys, no_wait):
    """The first landing said "not in the local cache ... unset HF_HUB_OFFLINE" for an HTTP 500, and did not retry."""
    repo = "alice/flaky-500"
    assert main(["head", "push", str(head_dir), repo, "--token", TOKEN, "--endpoint", hub.endpoint]) == 0
    hub.fail_requests(rf"^{WEIGHTS_NAME}$", status=500)  # every time
    capsys.readouterr()
    assert main(["head", "pull", repo, "--endpoint", hub.endpoint]) == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("hf-bridges head: error:"))
    assert "HTTP 500" in line and "try again later" in line and repo in line
    assert "HF_HUB_OFFLINE" not in line and "local" not in line
    assert hub.state.failed >= 2  # huggingface_hub retried the 500 before giving up

    hub.fail_requests(rf"^{WEIGHTS_NAME}$", status=500, times=2)  # a transient error
    out = tmp_path / "pulled"
    assert main(["head", "pull", repo, "--output", str(out), "--endpoint", hub.endpoint]) == 0
    assert (out / WEIGHTS_NAME).read_bytes() == (head_dir / WEIGHTS_NAME).read_bytes()
