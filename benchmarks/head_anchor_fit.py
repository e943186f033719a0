"""The default head's forward with the anchor statistics fitted once, next to another checkout's (issue 21.5).

The default head (cosine on anchor-standardised embeddings + the aligned component), 500 anchors + a 1,000-input
alignment set, 384-d, 64 inputs, inference mode, 1 thread; a training step (forward + backward + Adam) on the same.
Each round runs this checkout and ``--other`` (e.g. /work/main, the code before) in child processes, alternating
which goes first; prints the median CPU ms per call of each and the per-round ratio.

    python benchmarks/head_anchor_fit.py [--other /work/main] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, time, torch
torch.set_num_threads(1)
from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead
torch.manual_seed(0)
head = RelativeProductHead(HeadConfig(relative_anchors=500), 1500, 5, embedding_dim=384)
anchors, x, y = torch.randn(1500, 384), torch.randn(64, 384), torch.randint(0, 5, (64,))
def timed(fn, n):
    fn()
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1000
head.eval()
with torch.inference_mode():
    forward = timed(lambda: head(x, anchors), 100)
head.train()
opt = torch.optim.Adam(head.parameters())
def step():
    loss = torch.nn.functional.cross_entropy(head(x, anchors), y)
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({"forward": forward, "step": timed(step, 50)}))
"""


def run(tree: str) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", default="/work/main")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1])
    results = {"this": [], "other": []}
    for r in range(args.rounds):
        order = [("this", here), ("other", args.other)]
        for name, tree in order if r % 2 == 0 else order[::-1]:
            results[name].append(run(tree))
    for part in ("forward", "step"):
        this = [r[part] for r in results["this"]]
        other = [r[part] for r in results["other"]]
        ratios = [o / t for o, t in zip(other, this)]
        print(
            f"{part}: this checkout {statistics.median(this):.2f} ms, {args.other} {statistics.median(other):.2f} ms; "
            f"other / this {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
