"""Rebuild a transformers ``BertModel`` from a sentence-transformers ONNX export.

The export keeps biases and LayerNorms under their PyTorch names (``model.0.auto_model.*``) but stores every
Linear weight as an anonymous, transposed ``MatMul`` initializer. Each such MatMul feeds exactly one ``Add`` whose
other input is a named ``*.bias``; that bias names the Linear the weight belongs to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import BertModel

PREFIX = "model.0.auto_model."


def onnx_state_dict(onnx_path: os.PathLike) -> dict[str, torch.Tensor]:
    """The BERT state dict (without pooler: the export does not use it) recovered from the ONNX graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {k[len(PREFIX) :]: torch.from_numpy(v.copy()) for k, v in init.items() if k.startswith(PREFIX)}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in init or node.input[1].startswith(PREFIX):
            continue
        adds = [c for c in consumers.get(node.output[0], []) if c.op_type == "Add"]
        biases = [i for a in adds for i in a.input if i.startswith(PREFIX) and i.endswith(".bias")]
        if len(biases) != 1:
            raise ValueError(f"{onnx_path}: cannot tell which Linear MatMul {node.name} belongs to ({biases})")
        weight = init[node.input[1]].T.copy()  # ONNX x @ W  ==  torch Linear with weight W^T
        state[biases[0][len(PREFIX) : -len(".bias")] + ".weight"] = torch.from_numpy(weight)
    if "embeddings.word_embeddings.weight" not in state:
        raise ValueError(f"{onnx_path} does not look like a sentence-transformers BERT export (no {PREFIX} weights)")
    return state


def onnx_to_bert(
    onnx_path: os.PathLike, base_config: os.PathLike | None = None, num_attention_heads: int = 12
) -> BertModel:
    """A ``BertModel`` with the ONNX weights. ``base_config`` (a BERT config.json of the same family) supplies the
    settings the weights cannot tell (heads, activation, eps); shapes always come from the weights."""
    from transformers import BertConfig, BertModel

    state = onnx_state_dict(onnx_path)
    settings = {"num_attention_heads": num_attention_heads}
    if base_config:
        settings = json.loads(Path(base_config).read_text())
    for key in ("_name_or_path", "transformers_version", "architectures"):
        settings.pop(key, None)
    words = state["embeddings.word_embeddings.weight"]
    settings.update(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        num_hidden_layers=1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer.")),
        intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["embeddings.token_type_embeddings.weight"].shape[0],
    )
    config = BertConfig(**settings)
    config.architectures = ["BertModel"]
    # The export drops the pooler (sentence-transformers never uses it). A seeded random pooler keeps the saved
    # model loadable without "newly initialized" warnings; mean/cls pooling never touch it, `pooler` pooling
    # would be meaningless on this model.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("pooler.") and not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{onnx_path}: weights do not fit BertModel (missing {missing}, unexpected {unexpected})")
    return model.eval()
