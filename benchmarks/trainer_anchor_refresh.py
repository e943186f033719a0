"""Trainer + LoRA: the bridge's own ``anchor_refresh="auto"`` (all anchors re-embedded after every step) against
``AnchorRefreshCallback(every=N)``, same data, seed and steps, run one after the other in this process.

Prints the CPU seconds of ``trainer.train()`` for each, their ratio, and the test accuracy of each trained model
(evaluated with its anchors as the run left them: the callback re-embeds them when training ends).

    python benchmarks/trainer_anchor_refresh.py [--anchors 200] [--steps 24] [--every 8]
"""

from __future__ import annotations

import argparse
import time

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.data import load_labelled_dataset
from hf_bridges.logging import disable_progress_bar
from hf_bridges.training import AnchorRefreshCallback
from hf_bridges.training.build import apply_lora

MODEL = "sentence-transformers/paraphrase-MiniLM-L3-v2"


def run(args: argparse.Namespace, train: Dataset, test: Dataset, every: int | None) -> tuple[float, float]:
    torch.manual_seed(0)
    bridge = BridgeForSequenceClassification.from_encoder(
        MODEL, anchors=train.select(range(args.anchors))["text"], labels=train.features["label"], max_seq_length=64
    )
    model = apply_lora(bridge, target_modules=["query", "value"], r=8)
    tokenizer = bridge.tokenizer
    data = train.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True)
    training = TrainingArguments(
        output_dir="/tmp/trainer_anchor_refresh", per_device_train_batch_size=16, max_steps=args.steps,
        learning_rate=3e-4, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    callbacks = [AnchorRefreshCallback(every=every)] if every else []
    trainer = Trainer(model=model, args=training, train_dataset=data, processing_class=tokenizer, callbacks=callbacks)
    start = time.process_time()
    trainer.train()
    seconds = time.process_time() - start
    model.eval()
    predicted = bridge.predict(test["text"], batch_size=64, use_labels=False)
    return seconds, float((predicted == torch.tensor(test["label"])).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", type=int, default=200)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    disable_progress_bar()
    data = load_labelled_dataset("bbc_news")
    train = data["train"].shuffle(seed=0).select(range(args.train))
    test = data["test"].shuffle(seed=0).select(range(args.test))
    auto_s, auto_acc = run(args, train, test, None)
    every_s, every_acc = run(args, train, test, args.every)
    print(f"{MODEL}, LoRA r=8, {args.anchors} anchors, {args.steps} steps of 16, 1 thread, CPU s of trainer.train():")
    for name, seconds, accuracy in (
        ("anchor_refresh='auto'", auto_s, auto_acc),
        (f"AnchorRefreshCallback(every={args.every})", every_s, every_acc),
    ):
        print(f"  {name:<30} {seconds:8.1f} s   test accuracy {accuracy:.3f}")
    print(f"  auto / callback: {auto_s / every_s:.2f}x")


if __name__ == "__main__":
    main()
