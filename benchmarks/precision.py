"""Logits of a bridge loaded in bfloat16 / float16 against the same bridge in float32 (docs/method.md#precision).

A default-head bridge on a real encoder is trained briefly in float32 on cached features (BBC News, stratified
anchors), saved, then loaded back with ``from_pretrained(dir, dtype=...)`` for each dtype: the encoder runs in that
dtype, the head (and anchor embeddings) stay float32. Prints, per dtype, the max and mean absolute logit difference
to float32, the argmax agreement and the accuracy on ``--test`` test texts, as JSON.

    python benchmarks/precision.py [--model sentence-transformers/all-MiniLM-L6-v2] [--test 200] [--anchors 200] [--train 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.data import load_labelled_dataset


def stratified(labels: list[int], n: int) -> list[int]:
    """The first rows of each class in turn, ``n`` in all."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    order = [rows[j] for j in range(max(map(len, by_class.values()))) for rows in by_class.values() if j < len(rows)]
    return order[:n]


def logits(model, texts: list[str], batch: int = 32) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            out.append(model(**model.tokenize(texts[i : i + batch])).logits)
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--anchors", type=int, default=200)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_labelled_dataset("bbc_news", test_size=0.2, seed=0)
    train, test = data["train"], data["test"]
    rows = stratified(train["label"], args.anchors + args.train)
    anchors, fit = rows[: args.anchors], rows[args.anchors :]
    model = BridgeForSequenceClassification.from_encoder(
        args.model,
        anchors=[train[i]["text"] for i in anchors],
        labels=train.features["label"],
        max_seq_length=args.max_seq_length,
    )
    with torch.no_grad():
        x = torch.cat(
            [model.embed(**model.tokenize([train[i]["text"] for i in fit[j : j + 32]])) for j in range(0, len(fit), 32)]
        )
    y = torch.tensor([train[i]["label"] for i in fit])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(args.epochs):
        for batch in torch.randperm(len(y)).split(64):
            model(features=x[batch], labels=y[batch]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    texts, gold = test["text"][: args.test], torch.tensor(test["label"][: args.test])
    results = {"model": args.model, "test_texts": len(texts), "anchors": args.anchors}
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        reference = logits(model.eval(), texts)  # float32, as saved
        results["float32"] = {"accuracy": round(float((reference.argmax(1) == gold).float().mean()), 4)}
        for name in ("bfloat16", "float16"):
            loaded = BridgeForSequenceClassification.from_pretrained(folder, dtype=getattr(torch, name)).eval()
            out = logits(loaded, texts)
            diff = (out.float() - reference).abs()
            results[name] = {
                "encoder_dtype": str(loaded.encoder.dtype),
                "head_dtype": str(loaded.head.compute_dtype),
                "logits_dtype": str(out.dtype),
                "max_abs_diff": round(float(diff.max()), 5),
                "mean_abs_diff": round(float(diff.mean()), 5),
                "argmax_agreement": round(float((out.argmax(1) == reference.argmax(1)).float().mean()), 4),
                "accuracy": round(float((out.argmax(1) == gold).float().mean()), 4),
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
