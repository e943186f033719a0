"""examples/graph_karate.py end to end: GCNs trained from scratch, one relative head, zero-shot on the others."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "graph_karate.py"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def karate():
    pytest.importorskip("networkx", reason="networkx ships the karate club graph")
    spec = importlib.util.spec_from_file_location("graph_karate", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gcn_head_stitches_across_seeds_and_widths(karate):
    results = karate.run(seed=0, epochs=80, quiet=True)
    names = list(karate.GCNS)
    source = results["head_trained_on"]
    assert source == names[0] and results["test_nodes"] == 14
    assert results["relative"][source] >= 0.8  # chance is 0.5
    stitched = [results["relative"][n] for n in names[1:]]
    assert min(stitched) >= 0.7, results
    assert results["absolute"][names[2]] is None  # widths differ: the absolute head cannot take them


def test_node_encoder_is_a_plain_module_bridge_encoder(karate):
    features, adjacency, labels = karate.karate()
    assert features.shape == (34, 34) and int(labels.sum()) == 17
    torch.testing.assert_close(adjacency, adjacency.T)
    encoder = karate.NodeEncoder(karate.GCN(34, 8, 4, seed=0), features, adjacency)
    from hf_bridges import ModuleBridgeForClassification

    bridge = ModuleBridgeForClassification.from_module(encoder, anchors=torch.arange(6), num_labels=2)
    assert bridge.anchors.inputs.dtype == torch.long and bridge.config.features_dim == 4
    torch.testing.assert_close(bridge.anchor_embeddings, encoder(torch.arange(6)))
