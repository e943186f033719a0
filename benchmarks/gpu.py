"""GPU figures for the head: bf16 head throughput, head / encoder on the GPU, and multi-process embedding.

    python benchmarks/gpu.py                       # all three parts on cuda:0 (about 3 minutes on one GPU)
    python benchmarks/gpu.py --parts head,ratio    # skip the multi-process embedding
    python benchmarks/gpu.py --device cpu --rounds 3 --rows 64   # smoke mode: checks the script runs

1. head throughput: samples/s of the four-projection mlp_sum head (1280 anchors, D=384) forward, and forward +
   backward, in float32 and bfloat16 (autocast-free: head and inputs cast), batch 64 / 256 / 1024; CUDA events.
2. head / encoder: the MiniLM-sized random BERT (and the real all-MiniLM-L6-v2 when cached), 64 x 128 tokens,
   bf16 and float32, interleaved rounds (encoder then head on the same batch), median and min-max of the ratios.
3. multi-process embedding: ``torchrun --nproc_per_node N`` of the stitch embedding (hf_bridges.stitching.distributed)
   for N = 1 .. number of GPUs, rows/s, and a check that every N writes the same cache as N = 1.

Has NOT been run yet (no GPU was available where it was written): see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REAL = "sentence-transformers/all-MiniLM-L6-v2"
PROJECTIONS = ["cosine", "euclidean", "l1", "linf"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int = 10) -> float:
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / reps


def head_throughput(args, device) -> list[dict]:
    from hf_bridges.modeling.configuration_bridge import HeadConfig
    from hf_bridges.modeling.head import RelativeProductHead

    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        head = RelativeProductHead(HeadConfig.from_method("product-mlp_sum"), args.anchors, num_labels=5).to(
            device, dtype
        )
        anchors = torch.randn(args.anchors, 384, device=device, dtype=dtype)
        for batch in (64, 256, 1024):
            x = torch.randn(batch, 384, device=device, dtype=dtype)
            with torch.inference_mode():
                fwd = timed(lambda: head(x, anchors), device)
            xg = x.clone().requires_grad_()

            def step():
                head(xg, anchors).float().sum().backward()

            both = timed(step, device)
            rows.append(
                {
                    "dtype": str(dtype),
                    "batch": batch,
                    "forward_samples_s": batch / fwd,
                    "fwd_bwd_samples_s": batch / both,
                }
            )
            print(
                f"  head {dtype!s:<15} batch {batch:>5}: forward {batch / fwd:>10.0f} samples/s, "
                f"forward+backward {batch / both:>10.0f} samples/s"
            )
    return rows


def head_vs_encoder(args, device) -> list[dict]:
    from huggingface_hub import try_to_load_from_cache
    from transformers import AutoModel, BertConfig, BertModel

    from hf_bridges.modeling.configuration_bridge import HeadConfig
    from hf_bridges.modeling.head import RelativeProductHead, mean_pooling

    encoders = {
        "MiniLM-sized random": BertModel(
            BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
        )
    }
    if isinstance(try_to_load_from_cache(REAL, "config.json"), str):
        encoders[REAL] = AutoModel.from_pretrained(REAL)
    rows = []
    for label, encoder in encoders.items():
        for dtype in (torch.float32, torch.bfloat16):
            enc = encoder.to(device, dtype).eval()
            head = (
                RelativeProductHead(HeadConfig.from_method("product-mlp_sum"), args.anchors, num_labels=5)
                .to(device, dtype)
                .eval()
            )
            ids = torch.randint(1000, 20000, (64, 128), device=device)
            mask = torch.ones_like(ids)
            anchors = torch.randn(args.anchors, 384, device=device, dtype=dtype)
            ratios, enc_t, head_t = [], [], []
            with torch.inference_mode():
                x = mean_pooling(enc(input_ids=ids, attention_mask=mask), mask)
                head(x, anchors)
                for _ in range(args.rounds):
                    e = timed(lambda: enc(input_ids=ids, attention_mask=mask), device, reps=3)
                    h = timed(lambda: head(x, anchors), device, reps=3)
                    enc_t.append(e), head_t.append(h), ratios.append(h / e)
            row = {
                "encoder": label,
                "dtype": str(dtype),
                "encoder_ms": 1e3 * statistics.median(enc_t),
                "head_ms": 1e3 * statistics.median(head_t),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
            rows.append(row)
            print(
                f"  {label:<40} {dtype!s:<15} encoder {row['encoder_ms']:.2f} ms, head {row['head_ms']:.3f} ms, "
                f"head/encoder median {row['ratio_median']:.4f} (min {row['ratio_min']:.4f}, "
                f"max {row['ratio_max']:.4f})"
            )
    return rows


WORKER = r"""
import json, sys, time
import datasets
from hf_bridges.stitching.cache import EmbeddingCache
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.distributed import cached_embeddings, partial_state
from hf_bridges.stitching.encoder_kinds import get_encoder_kind
model, data_dir, cache_root, out = sys.argv[1:5]
spec = EncoderSpec(id=model, batch_size=128)
kind = get_encoder_kind("hf_text")
data = datasets.load_from_disk(data_dir)
state = partial_state()
state.wait_for_everyone()
t = time.perf_counter()
values = cached_embeddings(EmbeddingCache(cache_root), kind.identity(spec), data, "text", lambda: kind.load(spec),
                           batch_size=spec.batch_size, progress=False)
state.wait_for_everyone()
if state.is_main_process:
    json.dump({"seconds": time.perf_counter() - t, "rows": len(values)}, open(out, "w"))
    import numpy as np; np.save(out + ".npy", values)
"""


def multi_process_embedding(args) -> list[dict]:
    import datasets
    import numpy as np
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(REAL, "config.json"), str):
        print(f"  {REAL} not in the HF cache: skipped (run `hf-bridges offline-seed`)")
        return []
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    counts = sorted({1, 2, max(gpus, 1)}) if gpus >= 2 else [1] if gpus == 1 else [1, 2]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        words = "market film election match phone bank actor vote team chip growth award law goal data".split()
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(words, size=int(rng.integers(4, 100)))) for _ in range(args.rows)]
        datasets.Dataset.from_dict({"text": texts}).save_to_disk(tmp / "data")
        (tmp / "worker.py").write_text(WORKER)
        reference = None
        for n in counts:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
            if gpus == 0:
                env["ACCELERATE_USE_CPU"] = "1"
            out = tmp / f"result{n}.json"
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                str(n),
                str(tmp / "worker.py"),
                REAL,
                str(tmp / "data"),
                str(tmp / f"cache{n}"),
                str(out),
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:])
                raise SystemExit(f"{n}-process embedding failed")
            result = json.loads(out.read_text())
            values = np.load(str(out) + ".npy")
            reference = values if reference is None else reference
            diff = float(np.abs(values - reference).max())
            rows.append({"processes": n, "rows_s": result["rows"] / result["seconds"], "max_diff_vs_1": diff})
            print(
                f"  {n} process(es): {result['rows'] / result['seconds']:.0f} rows/s "
                f"(max |diff| vs 1 process {diff:.1e})"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--parts", default="head,ratio,embedding")
    parser.add_argument("--anchors", type=int, default=1280)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rows", type=int, default=4096, help="texts for the multi-process embedding")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --device cpu for the smoke mode")
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    results = {}
    parts = set(args.parts.split(","))
    if "head" in parts:
        print("1. head throughput")
        results["head"] = head_throughput(args, device)
    if "ratio" in parts:
        print("2. head / encoder")
        results["ratio"] = head_vs_encoder(args, device)
    if "embedding" in parts:
        print("3. multi-process stitch embedding")
        results["embedding"] = multi_process_embedding(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
