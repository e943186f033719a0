"""What the index bridge's encoder check sees: the probe figure (the mean cosine between the first 32 paired texts'
new vectors, mapped into the index, and their stored old vectors) of the encoder a bridge was fitted for, against
copies that keep its name and width: the same weights, float16 / bfloat16, weights moved by 1 / 3 / 10 % of their
spread, another model of the same width (all-MiniLM-L6-v2), max_seq_length cut to 8, and 4 steps of sentence-transformers fine-tuning (lr 2e-5). The check refuses a
copy whose figure falls more than ``PROBE_TOLERANCE`` (0.01) below the recorded one.

    python benchmarks/encoder_probe.py    # all-MiniLM-L6-v2 index, paraphrase-MiniLM-L3-v2 queries, 300 BBC titles
"""

from __future__ import annotations

import itertools

import torch
from sentence_transformers import InputExample, SentenceTransformer, losses
from torch.utils.data import DataLoader

from hf_bridges.data import load_labelled_dataset
from hf_bridges.retrieval import IndexBridge
from hf_bridges.retrieval.bridge import PROBE_TOLERANCE
from hf_bridges.retrieval.encoders import load_text_encoder

OLD, NEW = "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"


def main() -> None:
    titles = [t.split("\n")[0] for t in load_labelled_dataset("bbc_news")["train"]["text"][:300]]
    texts = list(dict.fromkeys(t for t in titles if t.strip()))
    bridge = IndexBridge.fit(OLD, NEW, texts, translation="rotation")
    recorded = bridge.new["probe"]["mapped_cosine"]

    def report(name: str, model: SentenceTransformer) -> None:
        got = bridge._probe(load_text_encoder(model).encode(bridge.texts[:32], "document"))["mapped_cosine"]
        verdict = "refused" if got < recorded - PROBE_TOLERANCE else "accepted"
        print(f"{name:28s} {got:.6f}  {got - recorded:+.6f}  {verdict}", flush=True)

    print(f"{'recorded (fit)':28s} {recorded:.6f}")
    report("same weights", SentenceTransformer(NEW, device="cpu"))
    for dtype in (torch.float16, torch.bfloat16):
        report(str(dtype).split(".")[1], SentenceTransformer(NEW, device="cpu").to(dtype))
    for scale in (0.01, 0.03, 0.1):
        moved = SentenceTransformer(NEW, device="cpu")
        with torch.no_grad():
            for p in moved.parameters():
                p.add_(scale * p.std() * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        report(f"weights moved {scale:.0%}", moved)
    report("all-MiniLM-L6-v2 (384-d too)", SentenceTransformer(OLD, device="cpu"))  # another model, same width
    short = SentenceTransformer(NEW, device="cpu")
    short.max_seq_length = 8
    report("max_seq_length 8", short)
    tuned = SentenceTransformer(NEW, device="cpu")
    pairs = [InputExample(texts=[a, b]) for a, b in itertools.pairwise(texts[:65])]
    loss = losses.MultipleNegativesRankingLoss(tuned)
    tuned.fit(
        train_objectives=[(DataLoader(pairs, batch_size=16, shuffle=True), loss)], epochs=1, show_progress_bar=False
    )
    report("fine-tuned 4 steps", tuned)


if __name__ == "__main__":
    main()
