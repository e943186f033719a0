"""Does ``stitch_report`` rank encoder pairs like measured stitched accuracy? (README, "Stitchable heads on the Hub")

Heads are trained (transformers ``Trainer``, frozen encoder, cached features) on BBC News with the real MiniLM-L6
and MiniLM-L3 encoders, saved with ``save_head``, then attached with ``from_encoder(encoder, head=folder)`` to
every encoder in the list: the two real ones, MiniLM-L6 with Gaussian noise added to every weight (graded
damage), and a randomly initialised BERT of the same shape (clearly incompatible). For each pair it prints the
label-free stitch score (and its per-projection parts) next to the stitched test accuracy, and the Spearman rank
correlation between them. Needs ``hf-bridges offline-seed`` (the encoders in the HF cache).

    python benchmarks/stitch_report_ranking.py --anchors 256 --train 384 --test 256 --max-length 64
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import AutoModel, AutoTokenizer, BertModel, Trainer, TrainingArguments

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.data import load_labelled_dataset
from hf_bridges.heads.compatibility import weighted_score

L6, L3 = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"


def noisy(model_id: str, sigma: float, seed: int = 0):
    """The encoder with N(0, (sigma * std(W))^2) noise added to every weight matrix: damage of a known size."""
    model = AutoModel.from_pretrained(model_id).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.add_(torch.randn(param.shape, generator=g) * sigma * param.std())
    return model


def random_bert(model_id: str, seed: int = 0):
    torch.manual_seed(seed)
    return BertModel(AutoModel.from_pretrained(model_id).config).eval()


def embed(bridge, tokenizer, texts, max_length: int, batch: int = 32) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            x = tokenizer(
                texts[i : i + batch], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            out.append(bridge.embed(**x))
    return torch.cat(out)


class FeatureDataset(torch.utils.data.Dataset):
    def __init__(self, features, labels):
        self.features, self.labels = features, torch.tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"features": self.features[i], "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=256)
    parser.add_argument("--train", type=int, default=384)
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--output", default="outputs/stitch_report_ranking.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_labelled_dataset("bbc_news")
    pool = data["train"].shuffle(seed=0)
    anchors = pool.select(range(args.anchors))
    train = pool.select(range(args.anchors, args.anchors + args.train))
    test = data["test"].shuffle(seed=0).select(range(args.test))
    names = data["train"].features["label"].names
    tokenizers = {L6: AutoTokenizer.from_pretrained(L6), L3: AutoTokenizer.from_pretrained(L3)}
    encoders = {  # name -> (encoder: id or model, tokenizer)
        "MiniLM-L6": (L6, tokenizers[L6]),
        "MiniLM-L3": (L3, tokenizers[L3]),
        "L6+noise0.2": (noisy(L6, 0.2), tokenizers[L6]),
        "L6+noise0.35": (noisy(L6, 0.35), tokenizers[L6]),
        "L6+noise0.5": (noisy(L6, 0.5), tokenizers[L6]),
        "L6+noise1.0": (noisy(L6, 1.0), tokenizers[L6]),
        "random-BERT": (random_bert(L6), tokenizers[L6]),
    }
    common = dict(
        num_labels=len(names), id2label=dict(enumerate(names)), max_seq_length=args.max_length, subspace_dropout=0.5
    )
    test_features, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        heads = {}
        for name in ("MiniLM-L6", "MiniLM-L3"):
            encoder, tokenizer = encoders[name]
            model = BridgeForSequenceClassification.from_encoder(
                encoder, anchors=anchors["text"], anchor_labels=anchors["label"], tokenizer=tokenizer, **common
            )
            features = embed(model, tokenizer, train["text"], args.max_length)
            trainer = Trainer(
                model=model,
                train_dataset=FeatureDataset(features, train["label"]),
                args=TrainingArguments(
                    output_dir=f"{tmp}/run-{name}",
                    num_train_epochs=args.epochs,
                    learning_rate=1e-3,
                    per_device_train_batch_size=32,
                    save_strategy="no",
                    report_to=[],
                    logging_strategy="no",
                    use_cpu=True,
                    seed=0,
                    disable_tqdm=True,
                ),
            )
            trainer.train()
            heads[name] = model.save_head(f"{tmp}/head-{name}", dataset="bbc_news")
        for target, (encoder, tokenizer) in encoders.items():
            for source, folder in heads.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    stitched = BridgeForSequenceClassification.from_encoder(
                        encoder, head=str(folder), tokenizer=tokenizer
                    )
                if target not in test_features:
                    test_features[target] = embed(stitched, tokenizer, test["text"], args.max_length)
                report = stitched.stitch_report
                # "auto" = what subspace_selection="auto" sets, applied to the same attached model (no re-embedding)
                for selection, weights in (("all", None), ("auto", report.suggested_subspace_weights)):
                    stitched.config.subspace_weights = weights
                    with torch.no_grad():
                        logits = stitched(features=test_features[target]).logits
                    accuracy = float((logits.argmax(-1) == torch.tensor(test["label"])).float().mean())
                    used = weights or [1.0] * len(report.per_projection)
                    score = weighted_score(report.per_projection, list(report.per_projection), used)
                    rows.append(
                        {
                            "head": source,
                            "encoder": target,
                            "selection": selection,
                            "score": score,
                            "accuracy": accuracy,
                            "per_projection": report.per_projection,
                            "subspace_weights": used,
                        }
                    )
                    print(
                        f"{source:>10} -> {target:<12} {selection:<5} score {score:.3f} acc {accuracy:.3f}  "
                        + " ".join(f"{k} {v:.3f}" for k, v in report.per_projection.items()),
                        flush=True,
                    )
    from scipy.stats import spearmanr

    for selection in ("all", "auto"):
        sub = [r for r in rows if r["selection"] == selection]
        rho = spearmanr([r["score"] for r in sub], [r["accuracy"] for r in sub])
        print(f"selection={selection}: Spearman(score, stitched accuracy) = {rho.statistic:.3f} over {len(sub)} pairs")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump({"args": vars(args), "rows": rows}, handle, indent=2)
    print("wrote", args.output)


if __name__ == "__main__":
    main()
