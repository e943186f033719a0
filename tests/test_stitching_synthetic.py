"""Zero-shot stitching that cannot pass by accident.

Encoder B is encoder A followed by a known map T (a random rotation, a signed permutation, an isotropic scaling,
a translation). A head trained on A is moved onto B: the anchors are re-embedded by B, nothing is retrained. Heads
whose projection is invariant to T must predict exactly what they predicted on A; a projection that is not
invariant must do measurably worse, which proves the test can fail.
"""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import topic_texts
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from hf_bridges import BridgeForSequenceClassification

pytestmark = pytest.mark.usefixtures("one_thread")


class MappedEncoder(nn.Module):
    """Encoder A followed by z -> z @ matrix * scale + shift on every token state."""

    def __init__(self, encoder: nn.Module, matrix: torch.Tensor, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("matrix", matrix)
        self.scale, self.shift = scale, shift

    def forward(self, **inputs) -> BaseModelOutput:
        hidden = self.encoder(**inputs).last_hidden_state
        return BaseModelOutput(last_hidden_state=hidden @ self.matrix * self.scale + self.shift)


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g))
    return q * torch.sign(torch.diagonal(r))


def signed_permutation(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    signs = torch.where(torch.rand(dim, generator=g) < 0.5, -1.0, 1.0)
    return torch.eye(dim)[torch.randperm(dim, generator=g)] * signs


MAPS = {
    "rotation": lambda d: dict(matrix=random_rotation(d, 1)),
    "signed_permutation": lambda d: dict(matrix=signed_permutation(d, 2)),
    "scaling": lambda d: dict(matrix=torch.eye(d), scale=6.0),
    "translation": lambda d: dict(matrix=torch.eye(d), shift=2.0),
}

# (map, projections that must transfer exactly, a projection that must not, subspace_norm)
# LayerNorm per subspace already removes a global scale from distances, so scaling is tested without it.
CASES = [
    ("rotation", ["cosine", "euclidean"], "l1", "layernorm"),
    ("rotation", ["cosine", "euclidean"], "linf", "layernorm"),
    ("signed_permutation", ["cosine", "euclidean", "l1", "linf"], None, "layernorm"),
    ("scaling", ["cosine"], "euclidean", "none"),
    ("translation", ["euclidean", "l1", "linf"], "cosine", "layernorm"),
]


@pytest.fixture(scope="module")
def task(tokenizer):
    # A noisy task (2 topic words among 8): small margins, so a map that distorts the space flips predictions.
    train_texts, train_labels = topic_texts(40, seed=1, topic_words=2, noise_words=6)
    test_texts, test_labels = topic_texts(40, seed=2, topic_words=2, noise_words=6)
    encode = lambda texts: dict(tokenizer(texts, padding=True, return_tensors="pt"))
    return encode(train_texts), torch.tensor(train_labels), encode(test_texts), torch.tensor(test_labels)


def train_head(model: BridgeForSequenceClassification, inputs: dict, labels: torch.Tensor, epochs: int = 60):
    """A few full-batch Adam steps on the frozen encoder's features (the head is all that trains)."""
    with torch.no_grad():
        features = model.embed(**inputs)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        model(features=features, labels=labels).loss.backward()
        optimizer.step()
    return model.eval()


def stitch(model: BridgeForSequenceClassification, encoder: nn.Module) -> BridgeForSequenceClassification:
    """The same head on another encoder: only the anchors are re-embedded."""
    stitched = copy.deepcopy(model)
    stitched.encoder = encoder
    stitched.refresh_anchors()
    return stitched.eval()


@torch.no_grad()
def predictions(model, inputs) -> torch.Tensor:
    return model(**inputs).logits.argmax(-1)


@pytest.mark.parametrize("map_name,invariant,breaking,norm", CASES)
def test_head_trained_on_a_works_on_mapped_b(tiny_encoder_dir, anchor_texts, task, map_name, invariant, breaking, norm):
    train_x, train_y, test_x, test_y = task
    results = {}
    for projections in [[p] for p in invariant] + ([[breaking]] if breaking else []):
        torch.manual_seed(0)
        model = BridgeForSequenceClassification.from_encoder(
            tiny_encoder_dir,
            anchors=anchor_texts,
            num_labels=5,
            projections=projections,
            head_config={"aligned": False, "abs_transform": "none"},  # the relative heads of this test, not the default
            aggregation="sum",
            subspace_norm=norm,
            classifier_dropout=0.0,
        )
        train_head(model, train_x, train_y)
        mapped = MappedEncoder(copy.deepcopy(model.encoder), **MAPS[map_name](model.config.hidden_size))
        on_a, on_b = predictions(model, test_x), predictions(stitch(model, mapped), test_x)
        accuracy_a = (on_a == test_y).float().mean().item()
        results[projections[0]] = (on_b == on_a).float().mean().item(), accuracy_a
        assert accuracy_a > 0.4, f"the head did not learn the task on A ({projections}: {accuracy_a:.2f})"
    for name in invariant:
        assert results[name][0] == 1.0, f"{name} should transfer exactly under {map_name}: {results}"
    if breaking:
        agreement = results[breaking][0]
        assert agreement < 0.9, f"{breaking} should not survive {map_name}, yet agrees {agreement:.2f}: {results}"


def test_product_head_transfers_when_it_uses_the_invariant_subspaces(tiny_encoder_dir, anchor_texts, task):
    """A full product head, trained with subspace dropout, given weights that keep only rotation-invariant subspaces."""
    train_x, train_y, test_x, _ = task
    torch.manual_seed(0)
    model = BridgeForSequenceClassification.from_encoder(
        tiny_encoder_dir,
        anchors=anchor_texts,
        num_labels=5,
        aggregation="mlp_sum",
        subspace_dropout=0.5,
        classifier_dropout=0.0,
        projections=["cosine", "euclidean", "l1", "linf"],
        head_config={"aligned": False, "abs_transform": "none"},  # the pre-issue-9 relative product, not the default
    )
    train_head(model, train_x, train_y, epochs=120)
    stitched = stitch(model, MappedEncoder(copy.deepcopy(model.encoder), random_rotation(32, 3)))
    keep = torch.tensor([1.0, 1.0, 0.0, 0.0])  # cosine, euclidean
    with torch.no_grad():
        on_a = model(**test_x, subspace_weights=keep).logits
        on_b = stitched(**test_x, subspace_weights=keep).logits
    torch.testing.assert_close(on_b, on_a, atol=1e-4, rtol=1e-4)
