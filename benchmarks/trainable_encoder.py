"""Trainable (unfrozen) encoder: what keeping the anchors in step with the encoder costs, and what it buys.

Strategies, same data, seed, optimizer and steps:
- auto:   today's ``anchor_refresh="auto"``: every optimizer step changes the weights, so the next forward re-embeds
          all anchors (no gradient);
- joint:  the authors' reference code: anchors and batch in ONE encoder call, with gradient through the anchors;
- every-N: ``anchor_refresh="manual"`` and ``refresh_anchors()`` every N steps (a callback in a Trainer);
- subset: ``manual``, and each step re-embeds a random fraction of the anchors (the rest stay as they were).

Task: the synthetic 5-topic texts of tests/conftest.py (noisy, so the encoder has to adapt) or BBC News when
installed (``--bbc``), with paraphrase-MiniLM-L3-v2 (from the HF cache) unfrozen. Prints the mean step time (refresh steps included) and
the test accuracy after training, evaluated with freshly embedded anchors (what a saved model would use).

    python benchmarks/trainable_encoder.py [--steps 40] [--anchors 50] [--batch 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from hf_bridges.modeling.modeling_bridge import BridgeForSequenceClassification

MODEL = "sentence-transformers/paraphrase-MiniLM-L3-v2"


def load_task(args):
    if args.bbc:
        from hf_bridges.data import load_labelled_dataset

        data = load_labelled_dataset("bbc_news")
        train = data["train"].shuffle(seed=0).select(range(args.train))
        test = data["test"].shuffle(seed=0).select(range(args.test))
        return list(train["text"]), list(train["label"]), list(test["text"]), list(test["label"]), "BBC News"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import topic_texts

    texts, labels = topic_texts(args.train // 5 + args.test // 5, seed=1, topic_words=3, noise_words=5)
    perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    texts, labels = [texts[i] for i in perm], [labels[i] for i in perm]
    return texts[: args.train], labels[: args.train], texts[args.train :], labels[args.train :], "synthetic topics"


def pad_cat(a: dict, b: dict) -> dict:
    width = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    return {
        k: torch.cat(
            [
                torch.nn.functional.pad(a[k], (0, width - a[k].shape[1])),
                torch.nn.functional.pad(b[k], (0, width - b[k].shape[1])),
            ]
        )
        for k in ("input_ids", "attention_mask")
    }


def run(strategy: str, args, task) -> dict:
    train_x, train_y, test_x, test_y, _ = task
    torch.manual_seed(0)
    refresh = "auto" if strategy == "auto" else "manual"
    model = BridgeForSequenceClassification.from_encoder(
        MODEL,
        anchors=train_x[: args.anchors],
        num_labels=5,
        max_seq_length=args.max_length,
        anchor_refresh=refresh,
    )
    model.unfreeze_encoder()
    tok = model.tokenizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    anchor_inputs = {"input_ids": model.anchors.input_ids, "attention_mask": model.anchors.attention_mask}
    g = torch.Generator().manual_seed(0)
    times, encoder_calls = [], 0
    model.train()
    for step in range(args.steps):
        idx = torch.randint(len(train_x), (args.batch,), generator=g).tolist()
        batch = tok(
            [train_x[i] for i in idx], padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"
        )
        labels = torch.tensor([train_y[i] for i in idx])
        start = time.perf_counter()
        if strategy == "joint":
            both = pad_cat(batch, anchor_inputs)
            emb = model.embed(**both)
            x, anchors = emb[: args.batch], emb[args.batch :]
            logits = model.head.classifier(model.head.represent(x, anchors, None, False))
            loss = torch.nn.functional.cross_entropy(logits, labels)
            encoder_calls += 1
        else:
            loss = model(**batch, labels=labels).loss
            encoder_calls += 1
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if strategy == "every-n" and (step + 1) % args.every == 0:
            model.refresh_anchors()
            encoder_calls += -(-args.anchors // model.config.anchor_batch_size)
        elif strategy == "subset":
            with torch.no_grad():
                pick = torch.randperm(args.anchors, generator=g)[: max(1, int(args.fraction * args.anchors))]
                model.encoder.eval()
                fresh = model.embed(
                    input_ids=model.anchors.input_ids[pick], attention_mask=model.anchors.attention_mask[pick]
                )
                model.encoder.train()
                updated = model.anchors.embeddings.clone()
                updated[pick] = fresh.to(updated.dtype)
                model.set_anchor_embeddings(updated)
                encoder_calls += 1
        elif strategy == "auto":
            encoder_calls += -(-args.anchors // model.config.anchor_batch_size)  # re-embedded by the next forward
        times.append(time.perf_counter() - start)
    if strategy == "auto":  # the refresh of the last step happens in the next forward: time it once more
        start = time.perf_counter()
        _ = model.anchor_embeddings
        times[-1] += time.perf_counter() - start
    model.eval()
    model.refresh_anchors()  # evaluation (and a saved model) uses anchors embedded by the final encoder
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_x), 64):
            batch = tok(
                test_x[i : i + 64], padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"
            )
            correct += int((model(**batch).logits.argmax(-1) == torch.tensor(test_y[i : i + 64])).sum())
    # mean, not median: a refresh every N steps lands on 1 step in N
    return {
        "step_s": statistics.fmean(times[1:]),
        "accuracy": correct / len(test_x),
        "encoder_calls_per_step": encoder_calls / args.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--anchors", type=int, default=50)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--bbc", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--strategies", default="auto,joint,every-n,subset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = load_task(args)
    print(
        f"{MODEL} unfrozen, {task[4]}: {len(task[0])} train / {len(task[2])} test, {args.anchors} anchors, "
        f"batch {args.batch}, {args.steps} steps, lr {args.lr}, every-n N={args.every}, subset {args.fraction:.0%}"
    )
    results = {s: run(s, args, task) for s in args.strategies.split(",")}
    base = results.get("auto", {}).get("step_s")
    for name, r in results.items():
        rel = f"  ({r['step_s'] / base:.2f}x auto)" if base else ""
        print(
            f"  {name:<8} step {r['step_s'] * 1e3:7.0f} ms{rel}  encoder calls/step {r['encoder_calls_per_step']:.1f}"
            f"  test accuracy {r['accuracy']:.3f}"
        )


if __name__ == "__main__":
    main()
