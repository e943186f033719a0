"""The README quick start, as one script: train the default head on all-MiniLM-L6-v2 (BBC News), save it, attach it
zero-shot to paraphrase-MiniLM-L3-v2 and classify with a pipeline.

    python examples/quickstart.py        # 2-3 minutes on an idle 2-core CPU (docs/quickstart-timing.md)

Every training text is embedded once (``model.encode``, with a progress bar); the anchors are training texts, so
their embeddings are taken from there, and the head trains for 10 epochs on the cached features in seconds.
"""

import torch
from transformers import pipeline

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.data import load_labelled_dataset
from hf_bridges.data.anchors import select_alignment_set, select_anchors

data = load_labelled_dataset("bbc_news")  # 1,780 train / 445 test articles, label column with ClassLabel names
train, test = data["train"], data["test"]
picks = select_anchors("stratified", 500, seed=0, labels=train["label"])
more = select_alignment_set(len(train), picks, 1000)  # unlabelled inputs that only fit the attach-time map
model = BridgeForSequenceClassification.from_encoder(  # the default head; frozen encoder; a sentence-transformers
    "sentence-transformers/all-MiniLM-L6-v2",  # model's pooling and Normalize are read and honoured
    anchors=train.select(picks)["text"],
    alignment_inputs=train.select(more)["text"],  # optional: +0.7 point stitched on BBC
    labels=train.features["label"],  # business, entertainment, politics, sport, tech
    max_seq_length=128,  # the benchmark's length (the model's own 256 takes twice as long)
    embed_anchors=False,  # the anchors are training texts: they are embedded with them, just below
)
features = model.encode(train["text"], batch_size=64, convert_to_tensor=True)  # once, with a progress bar
model.set_anchor_embeddings(features[picks + more])  # the same numbers from_encoder would have computed
labels = torch.tensor(train["label"])

optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)  # only the head trains (Trainer works too)
model.train()
for epoch in range(10):  # on the cached features: seconds, not an encoder pass per batch
    for rows in torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch)).split(64):
        model(features=features[rows], labels=labels[rows]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
model.eval()
own = model.predict(test["text"], batch_size=64, use_labels=False)  # its accuracy on the training encoder, stored
accuracy = float((own == torch.tensor(test["label"])).float().mean())  # with the head for the attach's estimate

model.save_head(  # head only: weights, raw anchors, config, anchor space, card
    "bbc-head",
    metrics={"accuracy": accuracy},  # (or metrics=trainer.evaluate()): an attach then prints "expected accuracy"
    anchors_in_training=True,  # its anchors and alignment set are training texts (docs/estimate.md)
)
# model.push_head_to_hub("your-name/bbc-head")  # the same files as a Hub model repo (private=..., token=...)
model.save_pretrained("bbc-bridge")  # a full model, tokenizer included: AutoModelForSequenceClassification loads it

stitched = BridgeForSequenceClassification.from_encoder(
    "sentence-transformers/paraphrase-MiniLM-L3-v2", head="bbc-head"
)  # a folder or a repo id: the head's anchors are re-embedded by the new encoder and a
print(stitched.stitch_report)  # translation fitted on them; label-free score and expected accuracy on L3
predicted = stitched.predict(test["text"], batch_size=64, use_labels=False)  # SetFit-style, on texts
print(f"zero-shot accuracy on L3: {(predicted == torch.tensor(test['label'])).float().mean():.3f}")
classify = pipeline("text-classification", model=stitched)  # the bridge brings its tokenizer
print(classify("Shares in the bank fell after it cut its profit forecast."))  # [{'label': 'business', ...}]
