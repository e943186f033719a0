"""Re-attaching a head to an encoder that embedded its anchors before reuses them (heads.anchor_cache)."""

from __future__ import annotations

import torch
from helpers import make_encoder, topic_texts

from hf_bridges import BridgeForSequenceClassification


def _counting(monkeypatch, cls=BridgeForSequenceClassification):
    """Count the encoder forwards made while anchors are embedded (the only encoder calls an attach makes)."""
    calls = {"n": 0}
    original = cls._encode

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "_encode", counted)
    return calls


def _head(tokenizer, anchor_texts, tmp_path):
    _, labels = topic_texts(4, seed=123)
    model = BridgeForSequenceClassification.from_encoder(
        make_encoder(3), anchors=anchor_texts, anchor_labels=labels, tokenizer=tokenizer, num_labels=5
    )
    return model.save_head(tmp_path / "head")


def test_second_attach_by_path_reuses_the_anchor_embeddings(
    tokenizer, anchor_texts, tiny_encoder_dir, tmp_path, monkeypatch
):
    folder = _head(tokenizer, anchor_texts, tmp_path)
    cache = tmp_path / "cache"
    calls = _counting(monkeypatch)
    first = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=cache)
    embedded = calls["n"]
    assert embedded > 0 and len(list(cache.glob("*.safetensors"))) == 1
    second = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=cache)
    assert calls["n"] == embedded  # no encoder call: the anchors came from the cache
    assert torch.equal(second.anchor_embeddings, first.anchor_embeddings)
    batch = tokenizer(topic_texts(2, seed=5)[0], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(second(**batch).logits, first(**batch).logits)
        assert second.config.head.alignment == first.config.head.alignment  # same map fitted on the same anchors
    before = calls["n"]
    BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=False)
    assert calls["n"] == before + embedded  # anchor_cache=False embeds anyway


def test_what_changes_the_embeddings_misses_the_cache(tokenizer, anchor_texts, tiny_encoder_dir, tmp_path, monkeypatch):
    folder = _head(tokenizer, anchor_texts, tmp_path)
    cache = tmp_path / "cache"
    BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=cache)
    calls = _counting(monkeypatch)
    for kwargs in ({"pooling": "cls"}, {"prefix": "passage: "}, {"max_seq_length": 16}):
        before = calls["n"]
        BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=cache, **kwargs)
        assert calls["n"] > before, kwargs
    # the same folder with other weights (fine-tuned and saved over): its files' fingerprint changes
    retrained = tmp_path / "encoder"
    make_encoder(9).save_pretrained(retrained)
    tokenizer.save_pretrained(retrained)
    BridgeForSequenceClassification.from_encoder(str(retrained), head=folder, anchor_cache=cache)
    before = calls["n"]
    make_encoder(10).save_pretrained(retrained)
    BridgeForSequenceClassification.from_encoder(str(retrained), head=folder, anchor_cache=cache)
    assert calls["n"] > before


def test_an_in_memory_encoder_is_always_embedded(tokenizer, anchor_texts, tmp_path, monkeypatch):
    folder = _head(tokenizer, anchor_texts, tmp_path)
    cache = tmp_path / "cache"
    encoder = make_encoder(0)
    BridgeForSequenceClassification.from_encoder(encoder, head=folder, tokenizer=tokenizer, anchor_cache=cache)
    assert not cache.exists() or not list(cache.glob("*.safetensors"))  # it may have been trained since loading


def test_a_cache_that_cannot_be_written_costs_nothing_but_a_log_line(
    tokenizer, anchor_texts, tiny_encoder_dir, tmp_path, caplog
):
    folder = _head(tokenizer, anchor_texts, tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level("WARNING", logger="hf_bridges.heads.anchor_cache"):
        model = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=blocked)
    assert model.anchor_embeddings.shape[0] == len(anchor_texts)
    assert "could not write the anchor cache" in caplog.text


def test_environment_variable_moves_or_disables_the_cache(monkeypatch, tmp_path):
    from hf_bridges.heads.anchor_cache import ENV, default_root

    monkeypatch.setenv(ENV, str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.setenv(ENV, "0")
    assert default_root() is None
    monkeypatch.delenv(ENV)
    assert default_root().parts[-2:] == ("hf_bridges", "anchors")


def test_image_heads_reuse_their_anchor_embeddings_too(tmp_path, monkeypatch, one_thread):
    """An image head attached twice to a saved vision encoder embeds its uint8 anchors once; another image
    processor setting (what turns the anchors into pixel values) is another entry."""
    from test_vision import gray_images, mobilenet_processor, tiny_mobilenet

    from hf_bridges import BridgeForImageClassification

    folder = tmp_path / "mobilenet"
    tiny_mobilenet(seed=1).save_pretrained(folder)
    head = BridgeForImageClassification.from_encoder(
        tiny_mobilenet(), anchors=gray_images(10), image_processor=mobilenet_processor(), num_labels=3
    )
    head.save_head(tmp_path / "head")
    calls = _counting(monkeypatch, BridgeForImageClassification)
    cache = tmp_path / "cache"

    def attach(processor):
        return BridgeForImageClassification.from_encoder(
            str(folder), head=tmp_path / "head", image_processor=processor, anchor_cache=cache
        )

    first = attach(mobilenet_processor())
    embedded = calls["n"]
    assert embedded > 0
    second = attach(mobilenet_processor())
    assert calls["n"] == embedded and torch.equal(second.anchor_embeddings, first.anchor_embeddings)
    other = mobilenet_processor()
    other.image_mean = [0.4, 0.4, 0.4]
    attach(other)
    assert calls["n"] > embedded


MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _tokenised_texts(monkeypatch):
    """Count the texts every tokenizer is called on: a wrapper around the real ``__call__``, which does the work."""
    from transformers import PreTrainedTokenizerBase

    seen = {"texts": 0}
    original = PreTrainedTokenizerBase.__call__

    def counted(self, text=None, *args, **kwargs):
        seen["texts"] += len(text) if isinstance(text, (list, tuple)) else 1
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counted)
    return seen


def test_a_cached_reattach_tokenises_the_anchors_once(tmp_path, monkeypatch, one_thread):
    """Issue 21: a re-attach whose tokenizer the encoder's snapshot pins reads the fingerprint and the unknown-token
    counts from the anchor cache's token record and tokenises the anchors once, cut to what reaches the model, for
    the bridge's inputs: the same inputs, embeddings, logits and report as the first attach; a record whose cuts
    give other inputs is caught and replaced; a tokenizer passed in is never pinned (no record: as a first attach)."""
    from transformers import AutoTokenizer

    from hf_bridges.heads.anchor_cache import TokenRecord, read_tokens, write_tokens

    texts, labels = topic_texts(4, seed=11, topic_words=40)  # 40+ words each: longer than max_seq_length=16
    texts = [f"{t}. {t.upper()}" if i % 3 else t[:30] for i, t in enumerate(texts)]  # and a few short ones
    model = BridgeForSequenceClassification.from_encoder(
        MINILM, anchors=texts, anchor_labels=labels, num_labels=5, max_seq_length=16
    )
    folder = model.save_head(tmp_path / "head")
    cache = tmp_path / "cache"
    seen = _tokenised_texts(monkeypatch)
    first = BridgeForSequenceClassification.from_encoder(MINILM, head=folder, anchor_cache=cache)
    # not cached yet: the whole texts once (the fingerprint's call); the bridge's inputs are derived from its
    # encodings, not tokenised again, and checked by the real max_length call on a sample (8 longest, 4 shortest, 4
    # evenly spaced, some the same)
    assert len(texts) < seen["texts"] <= len(texts) + 16
    assert torch.equal(first.anchors.input_ids, model.anchors.input_ids)  # what the whole texts give
    assert torch.equal(first.anchors.attention_mask, model.anchors.attention_mask)
    (path,) = cache.glob("tokens-*.json")
    record = TokenRecord.from_json(path.read_text(), len(texts))
    assert record.cuts is not None and sum(c is not None for c in record.cuts) > len(texts) // 2

    def attach(**kwargs):
        seen["texts"] = 0
        bridge = BridgeForSequenceClassification.from_encoder(MINILM, head=folder, anchor_cache=cache, **kwargs)
        return bridge, seen["texts"]

    def same_as_first(bridge):
        assert torch.equal(bridge.anchors.input_ids, first.anchors.input_ids)
        assert torch.equal(bridge.anchors.attention_mask, first.anchors.attention_mask)
        assert bridge.config.anchors == first.config.anchors == texts  # the whole texts are kept
        assert torch.equal(bridge.anchor_embeddings, first.anchor_embeddings)
        batch = first.tokenize(texts[:5])
        with torch.no_grad():
            assert torch.equal(bridge(**batch).logits, first(**batch).logits)
        assert bridge.stitch_report.to_dict() == first.stitch_report.to_dict()

    second, calls = attach()
    assert calls == len(texts)  # once: the bridge's inputs, from the cut texts
    same_as_first(second)
    assert any("same token ids as the training tokenizer" in note for note in second.stitch_report.notes)

    record = read_tokens(cache, path.stem, len(texts))
    write_tokens(cache, path.stem, TokenRecord(**{**record.__dict__, "cuts": [3] * len(texts)}))  # cut too short
    third, calls = attach()
    assert 2 * len(texts) < calls <= 2 * len(texts) + 16  # the cut inputs differ from the record: fingerprint again
    same_as_first(third)
    assert read_tokens(cache, path.stem, len(texts)).cuts == record.cuts  # the record is replaced

    passed, calls = attach(tokenizer=AutoTokenizer.from_pretrained(MINILM))
    assert (
        len(texts) < calls <= len(texts) + 16
    )  # a tokenizer passed in is not pinned by the snapshot: as a first attach
    same_as_first(passed)
    # a tokenizer whose inputs are not the derived ones (it cuts the left end): the whole texts, as it cuts them
    left = AutoTokenizer.from_pretrained(MINILM, truncation_side="left")
    bridge, calls = attach(tokenizer=left)
    whole = BridgeForSequenceClassification.from_encoder(
        MINILM, anchors=texts, anchor_labels=labels, num_labels=5, max_seq_length=16, tokenizer=left
    )
    assert torch.equal(bridge.anchors.input_ids, whole.anchors.input_ids)
    assert not torch.equal(bridge.anchors.input_ids, first.anchors.input_ids)


def test_derived_anchor_inputs_equal_the_tokenizers_or_are_refused(tokenizer):
    """Issue 21: a first attach derives the bridge's anchor inputs from the fingerprint's encodings instead of
    tokenising the texts again; they equal the tokenizer's own padded call (either padding side), and derived
    inputs that the tokenizer's call does not give (here: encodings of another tokenizer) are refused (None: the
    bridge tokenises the texts)."""
    from transformers import AutoTokenizer

    from hf_bridges.heads.attach import AnchorTokens, anchor_token_ids

    texts, _ = topic_texts(4, seed=11, topic_words=40)
    texts = [t if i % 4 else t[:25] for i, t in enumerate(texts)]  # long rows (cut at 16) and short ones (padded)

    def derived(encoded_by, used_by, max_seq_length=16):
        _, offsets, encodings = anchor_token_ids(encoded_by, texts, offsets=True)
        return AnchorTokens(None, None, (0, 1), offsets, None, None, encodings).derived_inputs(
            used_by, texts, max_seq_length
        )

    for side in ("right", "left"):
        minilm = AutoTokenizer.from_pretrained(MINILM, padding_side=side)
        real = minilm(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
        inputs = derived(minilm, minilm)
        assert inputs is not None and set(inputs) == {"input_ids", "attention_mask"}
        for key in inputs:
            assert torch.equal(inputs[key], real[key]), (side, key)
        assert int(real["attention_mask"].sum(1).min()) < 16 < int(real["input_ids"].shape[1]) + 1  # both kinds
    assert derived(AutoTokenizer.from_pretrained(MINILM), tokenizer) is None  # another vocabulary's encodings
    left_cut = AutoTokenizer.from_pretrained(MINILM, truncation_side="left")
    assert derived(left_cut, left_cut) is None  # a tokenizer that cuts the left end is never derived


def test_a_bad_token_record_is_dropped_and_written_again(tokenizer, anchor_texts, tiny_encoder_dir, tmp_path, caplog):
    from hf_bridges.heads.anchor_cache import TokenRecord

    folder = _head(tokenizer, anchor_texts, tmp_path)
    cache = tmp_path / "cache"
    first = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=cache)
    (path,) = cache.glob("tokens-*.json")
    good = path.read_text()
    for bad in ("{not json", good.replace('"store_sha256\\":\\"', '"store_sha256\\":\\"0')):  # garbage; edited body
        path.write_text(bad)
        with caplog.at_level("WARNING", logger="hf_bridges.heads.anchor_cache"):
            again = BridgeForSequenceClassification.from_encoder(tiny_encoder_dir, head=folder, anchor_cache=cache)
        assert "anchor token record" in caplog.text and "is bad" in caplog.text
        assert torch.equal(again.anchors.input_ids, first.anchors.input_ids)
        assert TokenRecord.from_json(path.read_text(), len(anchor_texts)) == TokenRecord.from_json(
            good, len(anchor_texts)
        )
        caplog.clear()
