"""``hf-bridges head pull`` with the connection dropped mid-file (issue 11, probe 7), over real HTTP.

The local Hub server announces the whole body of ``bridge_head.safetensors``, sends half of it and closes the socket.
huggingface_hub retries a broken body itself (5 times, resuming into its ``.incomplete`` blob): a drop that goes on
must end in one clear line naming the repo and saying to retry, with no partial head file in ``--output`` or in the
cache's snapshot; a single drop is retried by the client and the pull succeeds.
"""

from __future__ import annotations

import pytest
from helpers import make_encoder
from hub_server import TOKEN, hub_fixture

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.cli import main
from hf_bridges.heads.format import HEAD_FILES

hub = pytest.fixture(hub_fixture)
WEIGHTS = "bridge_head.safetensors"


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory, tokenizer, anchor_texts):
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    )
    return model.save_head(tmp_path_factory.mktemp("dropped") / "head")


@pytest.fixture
def no_retry_wait(monkeypatch):
    """huggingface_hub sleeps 1 s before each of its retries; the retries themselves still run."""
    from huggingface_hub import file_download

    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)


def _push(hub, head_dir, repo: str) -> None:
    assert main(["head", "push", str(head_dir), repo, "--token", TOKEN, "--endpoint", hub.endpoint]) == 0


def test_dropped_connection_is_one_clear_line_and_leaves_no_partial_file(
    hub, head_dir, tmp_path, capsys, no_retry_wait
):
    repo = "alice/dropped-head"
    _push(hub, head_dir, repo)
    size = (head_dir / WEIGHTS).stat().st_size
    assert size > 1000
    hub.drop_connection(rf"^{WEIGHTS}$", after=size // 2)  # every try breaks half-way
    output = tmp_path / "pulled"
    capsys.readouterr()
    assert main(["head", "pull", repo, "--output", str(output), "--endpoint", hub.endpoint]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()  # the client's progress bar and retry warnings come first
    errors = [i for i, line in enumerate(lines) if line.startswith("hf-bridges head: error:")]
    assert len(errors) == 1 and lines[errors[0] + 1 :] == ["(rerun with --debug for the traceback)"], err
    line = lines[errors[0]]
    assert repo in line and "connection broke" in line and "retry" in line
    assert hub.state.dropped >= 2  # the client retried before giving up
    # nothing partial where a user would read it: no --output files, no head file in the cache's snapshot
    assert not output.exists() or not any(output.iterdir())
    served = hub.state.repos[repo].commits[hub.state.repos[repo].branches["main"]]
    for snapshot in (hub.home / "hub").glob("models--alice--dropped-head/snapshots/*"):
        assert not (snapshot / WEIGHTS).exists()
        for path in snapshot.iterdir():  # what did arrive (config, card) is whole
            assert path.read_bytes() == served[path.name], path.name
    # huggingface_hub keeps its own resumable download as blobs/<etag>.incomplete: that is fine, and only there
    blobs = hub.home / "hub" / "models--alice--dropped-head" / "blobs"
    partial = [p for p in blobs.iterdir() if p.name.endswith(".incomplete")] if blobs.is_dir() else []
    assert all(p.stat().st_size < size for p in partial)

    # the network is back: the retry the message asks for gets the whole head
    hub.drop_connection(r"^$", after=0)
    assert main(["head", "pull", repo, "--output", str(output), "--endpoint", hub.endpoint]) == 0
    assert all((output / name).read_bytes() == (head_dir / name).read_bytes() for name in HEAD_FILES)


def test_single_drop_is_retried_by_the_client(hub, head_dir, tmp_path, no_retry_wait):
    repo = "alice/flaky-head"
    _push(hub, head_dir, repo)
    hub.drop_connection(rf"^{WEIGHTS}$", after=(head_dir / WEIGHTS).stat().st_size // 3, times=1)
    output = tmp_path / "pulled"
    assert main(["head", "pull", repo, "--output", str(output), "--endpoint", hub.endpoint]) == 0
    assert hub.state.dropped == 1
    assert all((output / name).read_bytes() == (head_dir / name).read_bytes() for name in HEAD_FILES)
