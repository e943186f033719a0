"""The transformer forward of a text encoder in an onnxruntime session (``backend: onnx`` of ``kind: hf_text``).

Where the ONNX file comes from: the one a repo or folder ships (``onnx/model.onnx``, as sentence-transformers repos
do) when present, else an export of the model by ``torch.onnx.export`` (what optimum itself calls: optimum-onnx, the
layer sentence-transformers' ``backend="onnx"`` needs, supports only transformers < 4.58, see docs/performance.md).
The export is cached under ``HF_HOME/hf_bridges/onnx/`` (or ``$HF_BRIDGES_ONNX_CACHE``), one folder per model id,
resolved commit (a local folder: a fingerprint of its files) and transformers / torch version, so a new snapshot or
a new stack exports again; it is written to a temporary file, checked against torch on a batch of another shape than
the traced one, then renamed, under a file lock (two processes export once). A cached export that onnxruntime cannot
read is exported again; a shipped file that it cannot read is an error naming the fix. Tokenisation, length sort
and pooling stay in the caller: only token ids go in and token states come out.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..logging import get_logger
from ..modeling.registry import HfBridgesError

ONNX_FILE = "onnx/model.onnx"  # where sentence-transformers repos keep their ONNX export (optimum's layout)
EXPORT = "export"  # onnx_file value: never look for a shipped file, always use (or make) the cached export
ENV = "HF_BRIDGES_ONNX_CACHE"
INSTALL = "pip install 'hf_bridges[onnx]'"
OPSET = 17
CHECK_TOLERANCE = 1e-4  # token states of the fresh export vs torch (float32 reduction order: ~3e-6 on MiniLM)
# The traced example is padded (texts of different lengths), so the attention mask path is what gets recorded; the
# check batch has another batch size and other lengths, so a shape frozen by the trace shows up before the rename.
EXAMPLE_TEXTS = ("a short text", "a somewhat longer text with a few more words in it, so the batch is padded", "two")
CHECK_TEXTS = ("one", "a check batch of another shape than the traced example, with more words", "x y", "z")

logger = get_logger(__name__)


class OnnxBackendError(HfBridgesError, RuntimeError):
    """The ONNX backend cannot run: onnxruntime missing, an unreadable ONNX file, or an export that is not faithful."""


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise OnnxBackendError(
            f"backend: onnx needs onnxruntime and onnx: {INSTALL} (or use backend: torch)"
        ) from error
    return onnxruntime


def cache_root() -> Path:
    """``$HF_BRIDGES_ONNX_CACHE``, else ``HF_HOME/hf_bridges/onnx``."""
    value = os.environ.get(ENV)
    if value:
        return Path(value)
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_bridges" / "onnx"


def export_path(model_id: str, revision_key: str, subfolder: str = "") -> Path:
    """The cached export of one model snapshot under this transformers / torch version."""
    import transformers

    name = Path(model_id).resolve().name if os.path.isdir(model_id) else model_id.replace("/", "--")
    parts = [name, *([subfolder.replace("/", "--")] if subfolder else []), revision_key]
    parts.append(f"transformers{transformers.__version__}-torch{torch.__version__}")
    return cache_root() / "--".join(parts) / "model.onnx"


def shipped_onnx(model_id: str, revision: str | None, subfolder: str = "", filename: str = ONNX_FILE) -> Path | None:
    """The ONNX file the folder or Hub repo ships (the local cache first; online, downloaded), else None."""
    rel = f"{subfolder}/{filename}" if subfolder else filename
    if os.path.isdir(model_id):
        path = Path(model_id) / rel
        return path if path.is_file() else None
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    found = try_to_load_from_cache(model_id, rel, revision=revision)
    if isinstance(found, str):
        return Path(found)
    if constants.HF_HUB_OFFLINE:
        return None
    try:
        return Path(hf_hub_download(model_id, rel, revision=revision))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None


def make_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads (1 by default: the box is shared)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class _TokenStates(torch.nn.Module):
    """The model's ``last_hidden_state`` from positional inputs (what the exporter traces)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).last_hidden_state


def export_onnx(model_id: str, path: Path, tokenizer: Any, revision: str | None = None, subfolder: str = "") -> None:
    """``torch.onnx.export`` of the model's token states with dynamic batch and sequence axes, written atomically
    to ``path`` once it reproduces torch on a check batch of another shape."""
    import inspect

    from transformers import AutoModel

    from .._io import atomic_path

    import_onnxruntime()
    where = {"revision": revision, **({"subfolder": subfolder} if subfolder else {})}
    # eager attention: sdpa's mask shortcuts are Python branches on tensor values, which a trace would freeze
    model = AutoModel.from_pretrained(model_id, attn_implementation="eager", **where).eval()
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in tokenizer.model_input_names if n in accepted]
    example = tokenizer(list(EXAMPLE_TEXTS), padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    check = tokenizer(list(CHECK_TEXTS), padding=True, return_tensors="pt")
    with torch.inference_mode():  # before the export: a traced model does not always run as before afterwards
        expected = model(**{n: check[n] for n in names}).last_hidden_state
    logger.info("exporting %s to ONNX (torch.onnx.export, opset %d): %s", model_id, OPSET, path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # the TorchScript exporter is chosen on purpose (no onnxscript needed); its tracer warnings concern the
        # branches the check below verifies
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _TokenStates(model, names),
            tuple(example[n] for n in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
        got = OnnxTextEncoder(make_session(tmp), tmp)(**{n: check[n] for n in names})
        mask = check["attention_mask"].unsqueeze(-1).bool()
        diff = float((got - expected).abs().masked_fill(~mask, 0).max())
        if not diff <= CHECK_TOLERANCE:
            raise OnnxBackendError(
                f"the ONNX export of {model_id} does not reproduce torch on a batch of another shape (max |diff| "
                f"{diff:.2e} > {CHECK_TOLERANCE}): the trace froze a shape-dependent branch of this architecture; "
                "use backend: torch for this encoder"
            )


class OnnxTextEncoder:
    """Token ids in, token states out, through an onnxruntime session (the inputs the graph names, cast to its
    dtypes; a graph without ``token_type_ids`` simply does not get them)."""

    def __init__(self, session: Any, path: Path):
        self.session, self.path = session, Path(path)
        dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
        self.inputs = {i.name: dtypes.get(i.type, np.int64) for i in session.get_inputs()}
        outputs = session.get_outputs()
        named = [o.name for o in outputs if o.name in ("last_hidden_state", "token_embeddings")]
        states = named or [o.name for o in outputs if o.shape is not None and len(o.shape) == 3]
        if not states:
            raise OnnxBackendError(
                f"{path} has no output of token states (rank 3; outputs: {[o.name for o in outputs]}): set the "
                f"encoder option onnx_file: {EXPORT} to export the model instead"
            )
        self.output = states[0]

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        feed = {}
        for name, dtype in self.inputs.items():
            if name in inputs:
                feed[name] = np.ascontiguousarray(inputs[name].numpy(), dtype=dtype)
            elif name == "token_type_ids":  # a tokenizer that returns none: segment 0, as the model's default
                feed[name] = np.zeros(inputs["input_ids"].shape, dtype=dtype)
            else:
                raise OnnxBackendError(f"{self.path} needs the input {name!r}, which the tokenizer does not return")
        return torch.from_numpy(self.session.run([self.output], feed)[0])


def load_onnx_encoder(
    model_id: str,
    revision_key: str,
    tokenizer: Any,
    revision: str | None = None,
    subfolder: str = "",
    threads: int = 1,
    onnx_file: str = ONNX_FILE,
) -> OnnxTextEncoder:
    """The shipped ONNX file of the model (``onnx_file`` in the repo or folder) when there is one, else the cached
    export (made once under a file lock; an unreadable one is made again)."""
    shipped = None if onnx_file == EXPORT else shipped_onnx(model_id, revision, subfolder, onnx_file)
    if shipped is not None:
        try:
            session = make_session(shipped, threads)
        except OnnxBackendError:
            raise
        except Exception as error:
            raise OnnxBackendError(
                f"onnxruntime cannot read {shipped}, the ONNX file {model_id} ships ({type(error).__name__}: "
                f"{error}); download it again (`hf download {model_id} {onnx_file} --force-download`) or set the "
                f"encoder option onnx_file: {EXPORT} to export the model instead"
            ) from error
        logger.info("%s: onnxruntime runs the shipped %s", model_id, shipped)
        return OnnxTextEncoder(session, shipped)
    from filelock import FileLock

    path = export_path(model_id, revision_key, subfolder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=1800):
        if path.is_file():
            try:
                return OnnxTextEncoder(make_session(path, threads), path)
            except OnnxBackendError:
                raise
            except Exception as error:
                logger.warning("cached ONNX export %s is unreadable (%s): exporting it again", path, error)
        export_onnx(model_id, path, tokenizer, revision, subfolder)
    return OnnxTextEncoder(make_session(path, threads), path)
