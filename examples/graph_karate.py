"""Graph node classification, stitched: two (three) independently trained GCNs on Zachary's karate club (networkx),
one relative head trained on the first, used zero-shot on the others through the plain-module path.

    python examples/graph_karate.py

The GCN is plain torch (no torch_geometric, no downloads). The bridge's encoder maps node ids -> node embeddings
(the module holds the graph), so the anchors are node ids and ``attach_encoder`` re-embeds them with another GCN.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn
from transformers.utils import ModelOutput

from hf_bridges import ModuleBridgeForClassification
from hf_bridges.training.fit import fit

# name -> (seed, hidden, embedding width): A and B differ by seed only, C is wider.
GCNS = {"GCN-A(s0,16,8)": (0, 16, 8), "GCN-B(s1,16,8)": (1, 16, 8), "GCN-C(s2,32,16)": (2, 32, 16)}


def karate() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-hot node features, the symmetric-normalised adjacency with self-loops, and the club labels."""
    import networkx as nx

    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    adjacency = torch.eye(n)
    for u, v in graph.edges():
        adjacency[u, v] = adjacency[v, u] = 1.0
    d = adjacency.sum(1).rsqrt()
    labels = torch.tensor([0 if graph.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)])
    return torch.eye(n), d[:, None] * adjacency * d[None, :], labels


class GCN(nn.Module):
    """Two graph convolutions (Kipf & Welling): relu(Â X W1) then Â H W2."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.w1, self.w2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return adjacency @ self.w2(torch.relu(adjacency @ self.w1(x)))


class NodeEncoder(nn.Module):
    """The bridge's encoder: node ids (B,) -> their embeddings (B, D); the graph lives in buffers."""

    def __init__(self, gcn: GCN, features: torch.Tensor, adjacency: torch.Tensor):
        super().__init__()
        self.gcn = gcn
        self.register_buffer("features", features)
        self.register_buffer("adjacency", adjacency)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        return self.gcn(self.features, self.adjacency)[nodes]


class NodeClassifier(nn.Module):
    """Encoder + linear layer, trained end to end: how each GCN is trained on its own (from scratch)."""

    def __init__(self, encoder: NodeEncoder, width: int, num_classes: int = 2):
        super().__init__()
        self.encoder, self.linear = encoder, nn.Linear(width, num_classes)

    def forward(self, inputs: torch.Tensor, labels=None) -> ModelOutput:
        logits = self.linear(self.encoder(inputs))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits)


def split_nodes(labels: torch.Tensor, seed: int, train_fraction: float = 0.6) -> tuple[torch.Tensor, torch.Tensor]:
    """A stratified node split."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        nodes = (labels == c).nonzero().flatten()
        nodes = nodes[torch.randperm(len(nodes), generator=g)]
        cut = round(len(nodes) * train_fraction)
        train.append(nodes[:cut])
        test.append(nodes[cut:])
    return torch.cat(train), torch.cat(test)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean())


def run(seed: int = 0, anchors_per_class: int = 4, epochs: int = 100, quiet: bool = False) -> dict:
    features, adjacency, labels = karate()
    train, test = split_nodes(labels, seed)
    anchors = torch.cat([train[labels[train] == c][:anchors_per_class] for c in (0, 1)])
    encoders, classifiers = {}, {}
    for name, (gcn_seed, hidden, width) in GCNS.items():
        encoder = NodeEncoder(GCN(features.shape[1], hidden, width, seed=gcn_seed + 10 * seed), features, adjacency)
        classifier = NodeClassifier(encoder, width)
        fit(
            classifier,
            train,
            labels[train],
            epochs=epochs,
            batch_size=len(train),
            learning_rate=1e-2,
            seed=gcn_seed + 10 * seed,
        )
        encoders[name], classifiers[name] = encoder.requires_grad_(False), classifier
    names = list(GCNS)
    source = names[0]
    bridge = ModuleBridgeForClassification.from_module(
        encoders[source],
        anchors=anchors,
        num_labels=2,
        projections=["cosine", "euclidean", "l1", "linf"],
        aggregation="mlp_sum",
        classifier_hidden_size=16,
        classifier_dropout=0.0,
        subspace_dropout=0.25,
    )
    fit(bridge, train, labels[train], epochs=epochs, batch_size=len(train), learning_rate=1e-2, seed=seed)
    results = {
        "seed": seed,
        "train_nodes": len(train),
        "test_nodes": len(test),
        "anchors": anchors.tolist(),
        "head_trained_on": source,
        "relative": {},
        "absolute": {},
    }
    with torch.no_grad():
        for name in names:
            bridge.attach_encoder(encoders[name])  # zero-shot for every name but the source
            results["relative"][name] = accuracy(bridge.eval()(inputs=test).logits, labels[test])
            same_width = encoders[name].gcn.w2.out_features == classifiers[source].linear.in_features
            results["absolute"][name] = (
                accuracy(classifiers[source].linear(encoders[name](test)), labels[test]) if same_width else None
            )
    if not quiet:
        print(f"head trained on {source}; test accuracy on {len(test)} nodes (chance 0.5):")
        for name in names:
            absolute = results["absolute"][name]
            print(
                f"  {name:<16} relative {results['relative'][name]:.3f}   absolute "
                + ("n/a (dims differ)" if absolute is None else f"{absolute:.3f}")
            )
    return results


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the graph is tiny)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [run(seed) for seed in args.seeds]
    names = list(GCNS)
    print(f"\nmean over seeds {args.seeds}:")
    for name in names:
        rel = sum(r["relative"][name] for r in runs) / len(runs)
        absolute = [r["absolute"][name] for r in runs if r["absolute"][name] is not None]
        print(
            f"  {name:<16} relative {rel:.3f}   absolute "
            + (f"{sum(absolute) / len(absolute):.3f}" if absolute else "n/a (dims differ)")
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(runs, handle, indent=2)
    return runs


if __name__ == "__main__":
    main()
