"""Issue 21.3: a stitch run's evaluation does only what the scores need. Accuracy / macro-F1 without importing
``evaluate`` or scikit-learn (the same numbers as the shipped modules), latent scores from three n x n products with
a head's reference space prepared once, the translation's map fitted once per pair, logits and r(z) from one pass;
every score equal to the formulas it replaces."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hf_bridges.heads.compatibility import linear_cka
from hf_bridges.metrics.latent import gram_cka, jaccard_at_k, latent_similarity, latent_space, mrr
from hf_bridges.stitching import evaluation
from hf_bridges.stitching.config import HeadSpec, LatentSpec, MethodSpec, SelectSpec, TrainingSpec
from hf_bridges.stitching.evaluation import evaluate_pair
from hf_bridges.stitching.training import predict, predict_with_representation, train_head

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's


@pytest.mark.subprocess
def test_classification_scores_equal_the_shipped_modules_without_importing_evaluate_or_sklearn():
    g = np.random.default_rng(0)
    cases = []
    for i in range(300):  # 1-14 classes (numpy's pairwise mean changes order past 8), absent / extra / negative labels
        classes, n = int(g.integers(1, 15)), int(g.integers(1, 300))
        references = g.integers(0, classes, n)
        predictions = g.integers(0, classes + int(g.integers(0, 3)), n) - int(g.integers(0, 2))
        if i % 3 == 0:
            predictions = np.where(g.random(n) < 0.8, references, predictions)
        cases.append((predictions.tolist(), references.tolist()))
    code = (
        "import json, sys\nfrom hf_bridges.metrics import classification_scores\n"
        "cases = json.load(sys.stdin)\n"
        "scores = [classification_scores(p, r) for p, r in cases]\n"
        "print(json.dumps({'scores': scores, 'evaluate': 'evaluate' in sys.modules, 'sklearn': 'sklearn' in sys.modules}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(cases), capture_output=True, text=True, check=True
    )
    out = json.loads(run.stdout)
    assert not out["evaluate"] and not out["sklearn"]
    from hf_bridges.metrics import load_metric

    accuracy, f1 = load_metric("accuracy"), load_metric("f1")
    for (predictions, references), got in zip(cases, out["scores"]):
        assert got["accuracy"] == accuracy._compute(predictions=predictions, references=references)["accuracy"]
        want = f1._compute(predictions=predictions, references=references, average="macro")["f1"]
        assert got["macro_f1"] == want  # bit for bit, through JSON's shortest round-trip repr


def _old_scores(x: torch.Tensor, y: torch.Tensor, k: int) -> dict:
    """The formulas before: each score its own normalised products."""

    def cosine(a, b):
        return torch.nn.functional.normalize(a.double(), dim=-1) @ torch.nn.functional.normalize(b.double(), dim=-1).T

    eye = torch.eye(x.shape[0], dtype=torch.bool)
    nx = cosine(x, x).masked_fill(eye, -torch.inf).topk(k, dim=1).indices.tolist()
    ny = cosine(y, y).masked_fill(eye, -torch.inf).topk(k, dim=1).indices.tolist()
    jaccard = [len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(nx, ny)]
    sim = cosine(x, y)
    ranks = 1 + (sim > sim.diagonal().unsqueeze(1)).sum(dim=1)
    return {
        "cka": linear_cka(x, y),
        "jaccard": float(sum(jaccard) / len(jaccard)),
        "mrr": float((1.0 / ranks.double()).mean()),
    }


@pytest.mark.parametrize(("n", "d"), [(60, 200), (120, 16), (40, 3)])
def test_latent_scores_equal_the_formulas_they_replace(n, d):
    g = torch.Generator().manual_seed(n)
    shared = torch.randn(n, 4, generator=g)
    x = shared @ torch.randn(4, d, generator=g) + 0.5 * torch.randn(n, d, generator=g)
    y = shared @ torch.randn(4, d, generator=g) + 0.5 * torch.randn(n, d, generator=g)
    x[3], y[3] = x[7], y[7]  # duplicate rows: tied neighbours break the same way
    x[5] = 0.0  # a zero row: normalised to zeros, as before
    old, new = _old_scores(x, y, 5), latent_similarity(x, y, k=5)
    assert new["jaccard"] == old["jaccard"] and new["mrr"] == old["mrr"]  # the same products, bit for bit
    # the mean cosine from the unit rows: F.cosine_similarity's operations above its 1e-8 norm clamp, bit for bit
    assert new["mean_cosine"] == float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1).mean())
    y[6] *= 1e-10  # under the clamp: F.cosine_similarity's own value
    tiny = float(torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=-1).mean())
    assert latent_similarity(x, y, k=5)["mean_cosine"] == tiny
    assert new["cka"] == pytest.approx(old["cka"], abs=1e-13)  # H X X^T H from the cosine matrix: float64 rounding
    assert gram_cka(x, 3 * x @ torch.linalg.qr(torch.randn(d, d, generator=g))[0]) == pytest.approx(1.0)


def test_a_prepared_space_is_reused_against_every_other(monkeypatch):
    x, y, z = (torch.randn(50, 30, generator=torch.Generator().manual_seed(s)) for s in range(3))
    reference = latent_space(x)
    first = latent_similarity(reference, y, k=4)
    products = []
    original = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: products.append(1) or original(a, b))
    second = latent_similarity(reference, z, k=4)
    assert len(products) == 2  # z z^T and x z^T: x x^T is kept in the reference space
    monkeypatch.undo()
    assert second == latent_similarity(x, z, k=4) and first == latent_similarity(x, y, k=4)
    assert jaccard_at_k(reference, y, 4) == first["jaccard"] and mrr(reference, y) == first["mrr"]


def _pair(n: int = 300, d: int = 16):
    g = np.random.default_rng(0)
    labels = g.integers(0, 3, n)
    x = (g.normal(size=(3, d))[labels] * 2 + g.normal(size=(n, d))).astype(np.float32)
    rotation = np.linalg.qr(g.normal(size=(d, d)))[0]
    others = [(x @ rotation + 0.1 * s * g.normal(size=(n, d))).astype(np.float32) for s in (1, 2)]
    return x, others, labels


METHODS = {
    "absolute": MethodSpec(name="absolute", kind="absolute"),
    "translation": MethodSpec(name="translation", kind="translation"),
    "select": MethodSpec(name="sel", projections=["cosine", "euclidean"], select=SelectSpec()),
    "default": MethodSpec(name="default", kind="default"),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_one_head_against_two_encoders_prepares_its_reference_once_and_scores_as_without_the_cache(name, monkeypatch):
    method = METHODS[name]
    x, others, labels = _pair()
    anchors = [x[:60].copy()] + [o[:60].copy() for o in others]
    tests = [x[200:].copy()] + [o[200:].copy() for o in others]
    cache: dict = {}
    head = train_head(
        method, HeadSpec(), TrainingSpec(num_epochs=1), x[:200], labels[:200], anchors[0], 3, 0, feature_cache=cache
    )
    calls = {"own": 0, "orthogonal": 0}
    original_predict, original_fit = evaluation.predict, evaluation.fit_orthogonal
    original_both = evaluation.predict_with_representation

    def counted_predict(*args, **kwargs):
        calls["own"] += args[1] is tests[0]  # a pass over the head's own encoder's rows
        return original_predict(*args, **kwargs)

    def counted_both(*args, **kwargs):
        calls["own"] += args[1] is tests[0]
        return original_both(*args, **kwargs)

    def counted_fit(*args):
        calls["orthogonal"] += 1
        return original_fit(*args)

    monkeypatch.setattr(evaluation, "predict", counted_predict)
    monkeypatch.setattr(evaluation, "predict_with_representation", counted_both)
    monkeypatch.setattr(evaluation, "fit_orthogonal", counted_fit)
    cached = [
        evaluate_pair(head, method, tests[0], anchors[0], tests[t], anchors[t], labels[200:], LatentSpec(), cache)
        for _ in range(2)
        for t in (0, 1, 2)
    ]
    # one pass over the head's own encoder's rows for its same-encoder logits and the reference r(z) of its latent
    # scores (the select method: one per chosen weights), the new encoders' r(z) from the logits' pass; the
    # translation's map once per pair
    weights = {json.dumps(r.get("subspace_weights")) for r in cached[:3]}
    assert calls["own"] == (len(weights) if name == "select" else 1)
    assert calls["orthogonal"] == (2 if name == "translation" else 0)
    monkeypatch.undo()
    fresh = [
        evaluate_pair(head, method, tests[0], anchors[0], tests[t], anchors[t], labels[200:], LatentSpec())
        for t in (0, 1, 2)
    ]
    assert cached[:3] == fresh and cached[3:] == fresh


@pytest.mark.parametrize("name", ["absolute", "select", "default"])
@pytest.mark.parametrize("limit", [100, 60])
def test_logits_and_representation_in_one_pass_equal_the_two_calls(name, limit):
    x, _, labels = _pair()
    cache: dict = {}
    head = train_head(
        METHODS[name],
        HeadSpec(),
        TrainingSpec(num_epochs=1),
        x[:200],
        labels[:200],
        x[:60].copy(),
        3,
        0,
        feature_cache=cache,
    )
    anchors, rows = x[:60].copy(), x[200:].copy()
    weights = [0.0, 1.0] if name == "default" else ([0.0, 1.0] if name == "select" else None)
    logits, representation = predict_with_representation(head, rows, anchors, weights, limit, cache)
    assert np.array_equal(logits, predict(head, rows, anchors, weights, feature_cache=cache))
    want = predict(head, rows, anchors, weights, represent=True, feature_cache=cache, limit=limit)
    assert np.array_equal(representation, want)


def test_subspace_selection_past_the_dense_limit_reads_the_attach_scores_and_builds_no_anchor_matrix(monkeypatch):
    from hf_bridges.heads.compatibility import projection_scores

    x, (y, _), _ = _pair()
    anchors_a, anchors_b = x[:40].copy(), y[:40].copy()
    method = MethodSpec(name="sel", projections=["cosine", "euclidean", "l1"], select=SelectSpec())
    dense, _ = evaluation.attach_weights(method, anchors_a, anchors_b)  # 40 anchors: the k x k matrices
    built = []
    original = evaluation.anchor_space
    monkeypatch.setattr(evaluation, "anchor_space", lambda *a: built.append(1) or original(*a))
    monkeypatch.setattr(evaluation, "DENSE_REPORT_ANCHORS", 30)  # 40 anchors are past it
    weights, scores = evaluation.attach_weights(method, anchors_a, anchors_b)
    assert not built
    want, _ = projection_scores(torch.from_numpy(anchors_a), torch.from_numpy(anchors_b), method.projections)
    assert scores == want
    assert weights == dense  # the same choice here: the scores differ by float rounding and the anchor subset


def test_a_representation_that_reads_no_trained_state_is_scored_once_for_every_seed(monkeypatch):
    """Issue 21.3: r(z) of a relative head whose subspace norm and aggregation have no weights (``subspace_norm:
    none``, concat) is the same for every seed, so its latent scores are computed once per distinct pair of spaces
    (keyed on their content) and equal the uncached ones; with trained LayerNorms (the presets) r(z) is per head,
    scored every time."""
    from hf_bridges.stitching.evaluation import reads_no_trained_state

    x, others, labels = _pair()
    anchors, tests = [x[:60].copy(), others[0][:60].copy()], [x[200:].copy(), others[0][200:].copy()]
    calls = {"n": 0}
    original = evaluation.latent_similarity

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluation, "latent_similarity", counted)
    computed = {}
    for norm in ("none", "layernorm"):
        method, cache = MethodSpec(name=norm, projections=["cosine", "euclidean"]), {}
        for seed in (0, 1, 2):
            head = train_head(
                method, HeadSpec(subspace_norm=norm), TrainingSpec(num_epochs=1), x[:200], labels[:200], anchors[0], 3,
                seed, feature_cache=cache,
            )  # fmt: skip
            assert reads_no_trained_state(head) == (norm == "none")
            before = calls["n"]
            args = (head, method, tests[0], anchors[0], tests[1], anchors[1], labels[200:], LatentSpec())
            cached = evaluate_pair(*args, cache)
            computed.setdefault(norm, []).append(calls["n"] - before)
            assert cached == evaluate_pair(*args)  # no cache: scored again, the same numbers
    assert computed == {"none": [1, 0, 0], "layernorm": [1, 1, 1]}


def _relative_pair(n: int = 445, d: int = 384, k: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two r(z)-like spaces of the same rows: LayerNorm of the cosine to k anchors, for clustered embeddings and a
    noisy linear image of them (the latent scores' inputs in a stitch run)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (n + k,), generator=g)
    z = torch.randn(5, d, generator=g)[labels] * 1.5 + torch.randn(n + k, d, generator=g)
    w = z @ torch.randn(d, d, generator=g) / d**0.5 + 0.5 * torch.randn(n + k, d, generator=g)

    def relative(e: torch.Tensor) -> torch.Tensor:
        e = torch.nn.functional.normalize(e, dim=-1)
        return torch.nn.functional.layer_norm(e[:n] @ e[n:].T, (k,))

    return relative(z), relative(w)


def test_float32_products_stay_within_1e_6_of_float64_on_relative_representations():
    """Issue 21.3: a stitch run's latent scores take their n x n x d products in float32 (``latent.precision``,
    default float32): the CKA and mean cosine within 1e-6 of float64, Jaccard@10 and MRR within one tie of it; the
    float32 spaces hold no float64 copy of the rows, and the two precisions are not mixed."""
    x, y = _relative_pair()
    exact = latent_similarity(x, y, k=10)
    fast = latent_similarity(x, y, k=10, precision="float32")
    assert exact == latent_similarity(x, y, k=10, precision="float64")  # the default: float64
    assert fast["cka"] == pytest.approx(exact["cka"], abs=1e-6) and fast["cka"] != exact["cka"]
    assert fast["mean_cosine"] == pytest.approx(exact["mean_cosine"], abs=1e-6)
    assert fast["jaccard"] == pytest.approx(exact["jaccard"], abs=1 / 445)  # a neighbour tie may break otherwise
    assert fast["mrr"] == pytest.approx(exact["mrr"], abs=1 / 445)
    space = latent_space(x, "float32")
    assert space.rows.dtype == torch.float32 and space.product.dtype == torch.float32 and space._unit is None
    assert latent_similarity(space, y, k=10) == fast  # the precision of a prepared space
    with pytest.raises(ValueError, match="a float64 latent space was given where float32"):
        latent_similarity(space, latent_space(y), k=10)
    with pytest.raises(ValueError, match="unknown latent precision"):
        latent_space(x, "float16")


def test_the_run_passes_its_latent_precision_and_float64_gives_the_scores_before(tmp_path):
    """``latent.precision`` reaches the scores (float64: the exact scores, as every release before), is checked
    with the config, and the run's report says which."""
    from hf_bridges.stitching import ConfigError, load_config

    x, others, labels = _pair(445, 16)
    method = METHODS["absolute"]
    head = train_head(method, HeadSpec(), TrainingSpec(num_epochs=1), x[:200], labels[:200], x[:60], 3, 0)
    rows = {p: evaluate_pair(head, method, x[200:], x[:60], others[0][200:], others[0][:60], labels[200:],
                             LatentSpec(precision=p), {}) for p in ("float32", "float64")}  # fmt: skip
    want = latent_similarity(
        torch.from_numpy(predict(head, x[200:], x[:60], represent=True)),
        torch.from_numpy(predict(head, others[0][200:], others[0][:60], represent=True)),
        k=10,
    )
    assert rows["float64"]["latent"] == want
    assert rows["float32"]["latent"] != want and rows["float32"]["accuracy"] == rows["float64"]["accuracy"]
    for key in ("cka", "mean_cosine"):
        assert rows["float32"]["latent"][key] == pytest.approx(want[key], abs=1e-6)
    config = tmp_path / "c.yaml"
    config.write_text(
        "encoders: [{id: a, kind: hf_text}]\nmethods: [{name: absolute, kind: absolute}]\n"
        "latent: {precision: float16}\n"
    )
    with pytest.raises(ConfigError, match="latent.precision"):
        load_config(config)


def test_each_encoders_anchor_matrices_are_built_and_centred_once_for_every_pair(monkeypatch):
    """Issue 21.3: the select methods' subspace scores compare each encoder's anchor-vs-anchor matrices with its own
    and with every other encoder's: with the run cache, each encoder's matrices are built once, centred once, their
    self-product computed once (``cka_operand``), and the scores equal ``linear_cka``'s bit for bit; only the
    variant being scored is held."""
    x, others, _ = _pair()
    anchors = [x[:80].copy(), others[0][:80].copy(), others[1][:80].copy()]
    method = MethodSpec(name="sel", projections=["cosine", "euclidean", "l1"], select=SelectSpec())
    want = {(i, j): evaluation.attach_weights(method, anchors[i], anchors[j]) for i in range(3) for j in range(3)}
    built = []
    original = evaluation.anchor_space
    monkeypatch.setattr(evaluation, "anchor_space", lambda *a: built.append(1) or original(*a))
    norms = []
    original_norm = torch.linalg.matrix_norm
    monkeypatch.setattr(torch.linalg, "matrix_norm", lambda *a, **k: norms.append(1) or original_norm(*a, **k))
    cache: dict = {}
    got = {(i, j): evaluation.attach_weights(method, anchors[i], anchors[j], None, cache) for (i, j) in want}
    monkeypatch.undo()
    assert got == want  # the same weights and scores, bit for bit
    assert len(built) == 3  # one anchor space per encoder
    # per projection: ||X_c^T X_c|| once per encoder (3) and ||Y_c^T X_c|| once per ordered pair of two encoders
    # (6); before: three per score, 9 scores
    assert len(norms) == len(method.projections) * (3 + 6)
    # held while the run scores this variant (projections, transform) only: the next one replaces them
    assert cache["anchor_operands"][0] == (("cosine", "euclidean", "l1"), "none")
    other = MethodSpec(name="std", projections=["cosine"], abs_transform="standard", select=SelectSpec())
    evaluation.attach_weights(other, anchors[0], anchors[1], None, cache)
    assert cache["anchor_operands"][0] == (("cosine",), "standard") and len(cache["anchor_operands"][1]) == 2
