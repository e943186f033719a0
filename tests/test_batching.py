"""Length-sorted anchor embedding: same embeddings as input-order batching, order restored, bar named."""

from __future__ import annotations

import pytest
import torch
from conftest import make_encoder, make_tokenizer, topic_texts

from hf_bridges.modeling.head import mean_pooling
from hf_bridges.modeling.modeling_bridge import embed_in_length_order, length_order


def _mixed_texts(n: int) -> list[str]:
    texts, _ = topic_texts(n // 5 + 1, seed=3)
    # lengths from 1 to ~20 words, interleaved so that input order is far from sorted
    return [" ".join([t] * (1 + i % 4)) if i % 3 else t.split()[0] for i, t in enumerate(texts[:n])]


@pytest.fixture()
def encoder_and_tokens(one_thread):
    encoder = make_encoder(hidden_size=32, layers=2)
    tokens = make_tokenizer()(_mixed_texts(37), padding=True, truncation=True, max_length=64, return_tensors="pt")
    return encoder, tokens


def _embed(encoder):
    calls = []

    @torch.no_grad()
    def fn(input_ids, attention_mask, **extra):
        calls.append(tuple(input_ids.shape))
        return mean_pooling(encoder(input_ids=input_ids, attention_mask=attention_mask, **extra), attention_mask)

    return fn, calls


def test_sorted_equals_unsorted_and_trims_padding(encoder_and_tokens):
    encoder, tokens = encoder_and_tokens
    fn, calls = _embed(encoder)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    reference = torch.cat([fn(input_ids=ids[i : i + 8], attention_mask=mask[i : i + 8]) for i in range(0, 37, 8)])
    calls.clear()
    got = embed_in_length_order(fn, ids, mask, 8, desc="embedding 37 anchors with tiny-bert")
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-6)
    # batches are cut to their longest row: later (shorter) batches are narrower than the padded width
    assert calls[0][1] == int(mask.sum(1).max()) and calls[-1][1] < ids.shape[1]
    assert sum(c[0] for c in calls) == 37


def test_extra_inputs_follow_the_rows(encoder_and_tokens):
    encoder, tokens = encoder_and_tokens
    fn, _ = _embed(encoder)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    types = torch.zeros_like(ids)
    plain = embed_in_length_order(fn, ids, mask, 5)
    with_types = embed_in_length_order(fn, ids, mask, 5, token_type_ids=types)
    torch.testing.assert_close(plain, with_types, atol=1e-6, rtol=1e-6)


def test_left_padding_is_not_trimmed(encoder_and_tokens):
    encoder, tokens = encoder_and_tokens
    fn, calls = _embed(encoder)
    ids, mask = tokens["input_ids"].flip(1), tokens["attention_mask"].flip(1)  # left-padded rows
    embed_in_length_order(fn, ids, mask, 8)
    assert {c[1] for c in calls} == {ids.shape[1]}


def test_order_is_longest_first_and_stable():
    mask = torch.tensor([[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]])
    assert length_order(mask.sum(dim=1)).tolist() == [1, 3, 2, 0]


def test_bad_arguments_are_named():
    fn = lambda **kw: kw["input_ids"].float()
    with pytest.raises(ValueError, match="batch_size"):
        embed_in_length_order(fn, torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="0 rows"):
        embed_in_length_order(fn, torch.ones(0, 3, dtype=torch.long), torch.ones(0, 3, dtype=torch.long), 4)


def test_hf_text_kind_matches_plain_batches(tiny_encoder_dir, one_thread):
    """The stitch embedding (hf_text kind) sorts each call's rows: same values as one padded forward."""
    from transformers import AutoModel, AutoTokenizer

    from hf_bridges.stitching.config import EncoderSpec
    from hf_bridges.stitching.encoder_kinds import get_encoder_kind

    spec = EncoderSpec(name="tiny", id=tiny_encoder_dir, batch_size=4)
    texts = _mixed_texts(23)
    got = get_encoder_kind("hf_text").load(spec)({"text": texts})
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_encoder_dir), AutoModel.from_pretrained(tiny_encoder_dir)
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=spec.max_length, return_tensors="pt")
    with torch.no_grad():
        reference = mean_pooling(model(**inputs), inputs["attention_mask"]).numpy()
    assert got.shape == reference.shape
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(reference), atol=1e-5, rtol=1e-5)


def test_refresh_anchors_sorts_by_length_and_names_the_anchors(tokenizer, one_thread, monkeypatch):
    """from_encoder / refresh_anchors embed the anchors in length order (identical to one-by-one embedding) and the
    progress bar says what is embedded."""
    from hf_bridges import BridgeForSequenceClassification
    from hf_bridges.modeling import modeling_bridge as batching

    seen = []
    original = batching.embed_in_length_order

    def spy(fn, ids, mask, size, desc=None, **extra):
        seen.append((desc, mask.sum(1).tolist()))
        return original(fn, ids, mask, size, desc, **extra)

    monkeypatch.setattr("hf_bridges.modeling.modeling_bridge.embed_in_length_order", spy)
    texts = _mixed_texts(23)
    bridge = BridgeForSequenceClassification.from_encoder(
        make_encoder(), anchors=texts, tokenizer=tokenizer, num_labels=2, anchor_batch_size=4
    ).eval()
    assert seen and seen[0][0] == f"embedding 23 anchors with {type(bridge.encoder).__name__}"
    with torch.no_grad():
        one_by_one = torch.cat([bridge.embed(**bridge.anchors.model_inputs(i, i + 1)) for i in range(23)])
    torch.testing.assert_close(bridge.anchor_embeddings, one_by_one, atol=1e-6, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_rows_pads_as_the_tokenizer_does(side):
    from hf_bridges.building.text_api import pad_rows

    tokenizer = make_tokenizer()
    tokenizer.padding_side = side
    texts = _mixed_texts(9)
    rows = dict(tokenizer(texts))
    padded = pad_rows(rows, {"input_ids": tokenizer.pad_token_id}, side)
    reference = tokenizer(texts, padding=True, return_tensors="pt")
    assert padded.keys() == reference.keys()
    for key in padded:
        assert torch.equal(padded[key], reference[key]), key


def test_whole_list_order_equals_padded_tensors(encoder_and_tokens):
    """The unpadded whole-list form (tokenised once) gives what the padded-tensor form gives, in input order."""
    from hf_bridges.building.text_api import embed_rows_in_length_order

    encoder, tokens = encoder_and_tokens
    fn, calls = _embed(encoder)
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    reference = embed_in_length_order(fn, ids, mask, 8)
    rows = {"input_ids": [r[m.bool()].tolist() for r, m in zip(ids, mask)]}
    rows["attention_mask"] = [[1] * len(r) for r in rows["input_ids"]]
    calls.clear()
    got = embed_rows_in_length_order(fn, rows, 8, {"input_ids": 0})
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-6)
    assert [c[1] for c in calls] == sorted(map(len, rows["input_ids"]), reverse=True)[::8]
