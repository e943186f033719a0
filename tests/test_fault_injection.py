"""Kill a real subprocess at each write step, then check what the public loaders see (issue 11, probes 2, 5, 6).

The kill points are named steps (``HF_BRIDGES_FAULT_AT=<step>[@N]``, read by ``hf_bridges._io.fault_point``): the
child dies with ``os._exit`` (or SIGKILL) there, with no cleanup, exactly as a killed process would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_bridges.cli import main as cli_main
from hf_bridges.heads.hub import load_head

pytestmark = pytest.mark.subprocess
TESTS = str(Path(__file__).resolve().parent)

HEAD_CHILD = r"""
import os, sys, torch
sys.path.insert(0, sys.argv[4])
from conftest import make_encoder, make_tokenizer
from hf_bridges import BridgeForSequenceClassification
layout, folder, fault = sys.argv[1:4]
anchors = [f"market film vote goal {i}" for i in range(8)]
model = BridgeForSequenceClassification.from_encoder(make_encoder(0), anchors=anchors, tokenizer=make_tokenizer(),
                                                     num_labels=3)
if layout == "shared":
    model.save_pretrained(folder)
    open(os.path.join(folder, "README.md"), "w").write("the full model's own card\n")
model.save_head(folder)
with torch.no_grad():
    for p in model.head.parameters():
        p.add_(1.0)
os.environ["HF_BRIDGES_FAULT_AT"] = fault
model.save_head(folder)
print("finished")
"""
# save_head's write steps: staging written; journal published; each of the 5 per-file replaces; all in.
HEAD_STEPS = ["save_head:staged", "publish:journal", *[f"publish:replace@{i}" for i in range(1, 6)], "publish:done"]


def _child(code: str, *args: str, kill: bool = False) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HF_BRIDGES_FAULT_AT", None)
    if kill:
        env["HF_BRIDGES_FAULT_SIGNAL"] = "KILL"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


def _died(result: subprocess.CompletedProcess, kill: bool) -> None:
    assert result.returncode == (-signal.SIGKILL if kill else 86), result.stderr[-2000:]
    assert "finished" not in result.stdout


@pytest.mark.parametrize("layout", ["own", "shared"])
@pytest.mark.parametrize("step", HEAD_STEPS)
def test_killed_save_head_leaves_the_previous_head(tmp_path, layout, step, tokenizer, reference):
    from conftest import make_encoder

    from hf_bridges import BridgeForSequenceClassification

    folder = tmp_path / "head"
    kill = step == "publish:replace@3"  # one step by a real SIGKILL, the others by os._exit
    _died(_child(HEAD_CHILD, layout, str(folder), step, TESTS, kill=kill), kill)
    # every public loader still reads one whole version: the previous one (the new one only never half of it)
    head = load_head(folder)
    assert sorted(head.state_dict) == sorted(reference)
    assert all(torch.equal(head.state_dict[k], reference[k].float()) for k in reference)
    model = BridgeForSequenceClassification.from_encoder(make_encoder(0), head=str(folder), tokenizer=tokenizer)
    assert torch.isfinite(model(**tokenizer(["market film"], return_tensors="pt")).logits).all()
    assert cli_main(["head", "inspect", str(folder)]) == 0
    if layout == "shared":
        assert (folder / "README.md").read_text() == "the full model's own card\n"
        assert (folder / "config.json").is_file()
    # the next save cleans every leftover and leaves a loadable head
    model.save_head(folder)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in folder.iterdir() if p.name.startswith(".hf_bridges")]
    assert leftovers == []
    load_head(folder)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The first (previous) version's head weights, written by a child that is not killed."""
    folder = tmp_path_factory.mktemp("reference") / "head"
    result = _child(
        HEAD_CHILD.replace('os.environ["HF_BRIDGES_FAULT_AT"] = fault\nmodel.save_head(folder)\n', ""),
        "own",
        str(folder),
        "-",
        TESTS,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return load_file(str(folder / "bridge_head.safetensors"))


def test_recover_command_restores_the_previous_version(tmp_path):
    folder = tmp_path / "head"
    _died(_child(HEAD_CHILD, "shared", str(folder), "publish:replace@2", TESTS), False)
    before = load_head(folder).state_dict
    assert (folder / ".hf_bridges-previous").is_dir()
    assert cli_main(["head", "recover", str(folder)]) == 0
    assert not (folder / ".hf_bridges-previous").exists()
    after = load_head(folder).state_dict  # now without the journal: the files on disk are the previous head
    assert all(torch.equal(before[k], after[k]) for k in before)


CHECKPOINT_CHILD = r"""
import os, sys, torch
from accelerate import Accelerator
from hf_bridges.training.checkpoint import save_checkpoint
out, fault = sys.argv[1:3]
torch.manual_seed(0)
accelerator = Accelerator(cpu=True)
model = torch.nn.Linear(4, 2)
optimizer = torch.optim.AdamW(model.parameters())
model, optimizer = accelerator.prepare(model, optimizer)
save_checkpoint(accelerator, out, 1, {"epoch": 0})
with torch.no_grad():
    model.weight.add_(1.0)
os.environ["HF_BRIDGES_FAULT_AT"] = fault
save_checkpoint(accelerator, out, 2, {"epoch": 0})
print("finished")
"""


@pytest.mark.parametrize("step", ["checkpoint:written", "checkpoint:renamed", "atomic:latest"])
def test_killed_checkpoint_resumes_from_the_previous_one(tmp_path, step):
    from accelerate import Accelerator

    from hf_bridges.training.checkpoint import read_state, resolve_checkpoint

    _died(_child(CHECKPOINT_CHILD, str(tmp_path), step), False)
    found = resolve_checkpoint("latest", tmp_path)
    assert found.name == "step-00000001" and read_state(found)["step"] == 1
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(torch.nn.Linear(4, 2))
    accelerator.load_state(str(found))
    torch.manual_seed(0)
    assert torch.equal(model.weight, torch.nn.Linear(4, 2).weight)


CACHE_CHILD = r"""
import os, sys
import datasets
sys.path.insert(0, sys.argv[3])
from stitch_helpers import save_tiny_encoder
from hf_bridges.stitching import cache as cache_module
from hf_bridges.stitching.cache import EmbeddingCache
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.encoder_kinds import HFTextEncoder
root, fault = sys.argv[1:3]
cache_module.SHARD_ROWS = 8
encoder = save_tiny_encoder(__import__("pathlib").Path(root) / "enc", seed=0, hidden_size=32)
spec = EncoderSpec(id=encoder, max_length=16)
kind = HFTextEncoder()
data = datasets.Dataset.from_dict({"text": [f"market film vote {i}" for i in range(30)]})
os.environ["HF_BRIDGES_FAULT_AT"] = fault
EmbeddingCache(os.path.join(root, "cache")).embeddings(kind.identity(spec), data, "text", lambda: kind.load(spec),
                                                       batch_size=8, progress=False)
print("finished")
"""


@pytest.mark.parametrize("step", ["cache.shard@1", "cache.shard@3", "atomic:manifest.json"])
def test_killed_cache_write_resumes_to_the_same_embeddings(tmp_path, step):
    import datasets

    from hf_bridges.stitching import cache as cache_module
    from hf_bridges.stitching.cache import EmbeddingCache
    from hf_bridges.stitching.config import EncoderSpec
    from hf_bridges.stitching.encoder_kinds import HFTextEncoder

    _died(_child(CACHE_CHILD, str(tmp_path), step, TESTS), False)
    spec = EncoderSpec(id=str(tmp_path / "enc"), max_length=16)
    kind = HFTextEncoder()
    data = datasets.Dataset.from_dict({"text": [f"market film vote {i}" for i in range(30)]})
    old_rows, cache_module.SHARD_ROWS = cache_module.SHARD_ROWS, 8
    try:
        resumed = EmbeddingCache(tmp_path / "cache").embeddings(
            kind.identity(spec), data, "text", lambda: kind.load(spec), batch_size=8, progress=False
        )
        fresh = EmbeddingCache(tmp_path / "fresh").embeddings(
            kind.identity(spec), data, "text", lambda: kind.load(spec), batch_size=8, progress=False
        )
    finally:
        cache_module.SHARD_ROWS = old_rows
    np.testing.assert_allclose(resumed, fresh, atol=1e-6)
    assert not list((tmp_path / "cache").glob("*/.tmp-*"))


SAVE_PRETRAINED_CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[2])
from conftest import make_encoder, make_tokenizer
from hf_bridges import BridgeForSequenceClassification
model = BridgeForSequenceClassification.from_encoder(make_encoder(0), anchors=["a b", "c d"], tokenizer=make_tokenizer(),
                                                     num_labels=2)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # room for small files only: a larger one breaks mid-write
try:
    model.save_pretrained(sys.argv[1])
except OSError as error:
    print("refused", error)
"""


def test_save_pretrained_under_a_size_limit_leaves_no_truncated_modeling_file(tmp_path):
    import hf_bridges.modeling as modeling

    result = _child(SAVE_PRETRAINED_CHILD, str(tmp_path / "model"), TESTS)
    assert result.returncode == 0, result.stderr[-2000:]
    source = Path(modeling.__file__).parent
    for shipped in (tmp_path / "model").glob("*.py") if (tmp_path / "model").is_dir() else []:
        assert shipped.read_bytes() == (source / shipped.name).read_bytes(), f"{shipped.name} is truncated"
    config = tmp_path / "model" / "config.json"
    assert not config.exists() or json.loads(config.read_text())


def test_written_files_respect_the_umask(tmp_path):
    """atomic_path used mkstemp (0600): results and heads were unreadable by the group (probe: file permissions)."""
    from hf_bridges._io import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "out.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o644


SAVE_AGAIN_CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[3])
import torch
from conftest import make_encoder, make_tokenizer
from hf_bridges import BridgeForSequenceClassification
torch.manual_seed(1)  # another head than the saved one
model = BridgeForSequenceClassification.from_encoder(make_encoder(0), anchors=["a b", "c d"], tokenizer=make_tokenizer(),
                                                     num_labels=2)
os.environ["HF_BRIDGES_FAULT_AT"] = sys.argv[2]
model.save_pretrained(sys.argv[1])
print("finished")
"""


@pytest.mark.parametrize("step", ["publish:replace@1", "publish:replace@3", "publish:done"])
def test_killed_save_pretrained_leaves_the_previous_model(tmp_path, step):
    """A kill while save_pretrained replaces a model's files: whole files only; the loader warns and names the
    recovery command, which brings back exactly the previous model."""
    from helpers import make_encoder, make_tokenizer

    from hf_bridges import BridgeForSequenceClassification
    from hf_bridges._io import restore_previous

    torch.manual_seed(0)
    old = BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=["a b", "c d"], tokenizer=make_tokenizer(), num_labels=2
    ).eval()
    folder = tmp_path / "model"
    old.save_pretrained(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    _died(_child(SAVE_AGAIN_CHILD, str(folder), step, TESTS), False)
    with pytest.warns(UserWarning, match="hf-bridges head recover"):
        BridgeForSequenceClassification.from_pretrained(folder)
    assert restore_previous(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    inputs = make_tokenizer()(["a b c"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            BridgeForSequenceClassification.from_pretrained(folder).eval()(**inputs).logits,
            old(**inputs).logits,
            rtol=0,
            atol=1e-6,
        )  # files equal byte for byte (above);
    # the loaded weights are mmapped at unaligned addresses, so CPU BLAS may take another kernel (last-bit noise)
    old.save_pretrained(folder)  # the next save cleans every leftover
    assert not list(tmp_path.glob(".model.tmp-*")) and not (folder / ".hf_bridges-previous").exists()
