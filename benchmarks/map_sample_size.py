"""How much of the default head's stitching loss is the variance of its anchor-fitted map (issue 9 research).

For a stitch preset, trains the default head on each encoder (cached embeddings, the benchmark's anchors, seeds and
epochs), then attaches it to every other encoder twice: with the map fitted on the anchors (what ``from_encoder``
does) and with the same ridge map fitted on more paired samples (the first N training embeddings of both
encoders: an oracle, not allowed in use). Prints stitched accuracy per pair, for the sum and the aligned component
alone. docs/method.md ("Where the BBC gap comes from") quotes its figures.

    python benchmarks/map_sample_size.py [--preset stitch-bbc] [--pairs 1000 0] [--seeds 0 1 2]

``--pairs 0`` means every training sample. Needs the preset's encoders in the HF cache (offline-seed).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

from hf_bridges.heads.compatibility import align_head
from hf_bridges.heads.translation import fit_affine
from hf_bridges.presets import resolve_preset
from hf_bridges.stitching.cache import EmbeddingCache, default_cache_root
from hf_bridges.stitching.config import load_config
from hf_bridges.stitching.runner import choose_anchors, embed_splits, prepare
from hf_bridges.stitching.training import predict, train_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="stitch-bbc")
    parser.add_argument("--pairs", type=int, nargs="+", default=[0], help="paired samples for the oracle map")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    args = parser.parse_args()
    config = load_config(resolve_preset(args.preset, kind="stitch"))
    method = next(m for m in config.methods if m.kind == "default")
    identities, train, test = prepare(config, Path(tempfile.mkdtemp()))
    cache = EmbeddingCache(Path(config.cache_dir or default_cache_root()))
    emb, _ = embed_splits(config, identities, train, test, cache, quiet=True)
    y_train, y_test = np.asarray(train["label"]), np.asarray(test["label"])
    idx, _ = choose_anchors(config, emb, y_train)
    names = [e.name for e in config.encoders]
    anchors = {n: emb[n, "train"][idx] for n in names}
    num_labels = int(max(y_train.max(), y_test.max()) + 1)
    columns = ["anchors"] + [f"{n or len(y_train)} pairs" for n in args.pairs]
    rows: dict = {}
    for seed in args.seeds or config.seeds:
        for a in names:
            head = train_head(
                method, config.head, config.training, emb[a, "train"], y_train, anchors[a], num_labels, seed
            )
            for b in (b for b in names if b != a):
                weights, _ = align_head(head, torch.from_numpy(anchors[a]), torch.from_numpy(anchors[b]))
                aligned_only = [0.0] * (len(weights) - 1) + [1.0]
                scores = []
                for n in [None, *args.pairs]:
                    attached = copy.deepcopy(head)
                    if n is not None:  # the same ridge map (alpha by 5-fold), fitted on n paired training samples
                        n = n or len(y_train)
                        attached.reset_alignment(anchors[a].shape[1])
                        target = attached.aligned_inputs(
                            torch.from_numpy(emb[a, "train"][:n]).double(), torch.from_numpy(anchors[a]).double()
                        )
                        source = torch.from_numpy(emb[b, "train"][:n])
                        fitted = fit_affine(source, target)
                        # fold the map onto the head's standardisation (B's anchor statistics)
                        mean, std = anchors[b].mean(0), anchors[b].std(0, ddof=1).clip(1e-6)
                        scale = torch.from_numpy(std).double() / fitted.source_std
                        weight = scale[:, None] * fitted.weight
                        bias = (
                            fitted.bias
                            + ((torch.from_numpy(mean).double() - fitted.source_mean) / fitted.source_std)
                            @ fitted.weight
                        )
                        attached.set_alignment(weight.float(), bias.float())
                    for w in (weights, aligned_only):
                        logits = predict(attached, emb[b, "test"], anchors[b], w)
                        scores.append(float((logits.argmax(1) == y_test).mean()))
                rows.setdefault((a, b), []).append(scores)
    print(f"{args.preset}: stitched accuracy, mean over seeds (sum of components | aligned component alone)")
    print("| pair | " + " | ".join(f"{c} sum | {c} aligned" for c in columns) + " |")
    print("|---" * (1 + 2 * len(columns)) + "|")
    table = {pair: np.mean(v, axis=0) for pair, v in rows.items()}
    for (a, b), mean in table.items():
        print(f"| {a}->{b} | " + " | ".join(f"{x:.3f}" for x in mean) + " |")
    print("| mean | " + " | ".join(f"{x:.3f}" for x in np.mean(list(table.values()), axis=0)) + " |")


if __name__ == "__main__":
    main()
