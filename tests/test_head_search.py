"""Finding heads over real HTTP: push heads with different base encoders, search by encoder returns the right ones."""

from __future__ import annotations

import argparse
import json

import pytest
from conftest import make_encoder
from hub_server import OTHER_TOKEN, TOKEN, hub_fixture
from huggingface_hub import HfApi

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.cards import head_card
from hf_bridges.heads.format import CARD_NAME, read_head
from hf_bridges.heads.hub import push_head_folder
from hf_bridges.heads.search import register_search, search_heads

hub = pytest.fixture(hub_fixture)
ENC_A, ENC_B, ENC_C = "org/encoder-a", "org/encoder-b", "org/encoder-c"


@pytest.fixture(scope="module")
def bridge(tokenizer, anchor_texts):
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0), anchors=anchor_texts, tokenizer=tokenizer, num_labels=5
    ).eval()


def publish(bridge, tmp_path, repo_id, trained_on, measured_on=(), token=TOKEN, private=False):
    folder = bridge.save_head(tmp_path / repo_id.replace("/", "--"))
    head = read_head(folder)
    head.config["encoder"]["name_or_path"] = trained_on  # as if trained on that Hub encoder
    rows = [{"encoder": e, "stitch_score": 0.9, "accuracy": 0.8} for e in measured_on]
    (folder / CARD_NAME).write_text(str(head_card(head, repo_id=repo_id, dataset="bbc_news", stitching_results=rows)))
    push_head_folder(folder, repo_id, token=token, private=private)


def test_search_by_encoder_over_http(hub, bridge, tmp_path, capsys):
    publish(bridge, tmp_path, "alice/head-a", ENC_A)
    publish(bridge, tmp_path, "alice/head-b", ENC_B, measured_on=[ENC_B, ENC_A])
    publish(bridge, tmp_path, "bob/head-c", ENC_C, token=OTHER_TOKEN, private=True)
    HfApi(token=TOKEN).create_repo("alice/not-a-head")  # no card: never listed
    api = HfApi(token=TOKEN)

    found = {h.repo_id: h for h in search_heads(ENC_A, api=api)}
    assert set(found) == {"alice/head-a", "alice/head-b"}
    assert found["alice/head-a"].relation(ENC_A) == "trained" and found["alice/head-b"].relation(ENC_A) == "measured"
    assert found["alice/head-b"].trained_on == ENC_B and found["alice/head-b"].measured_on == [ENC_A, ENC_B]
    assert [h.repo_id for h in search_heads(ENC_B, api=api)] == ["alice/head-b"]
    assert search_heads(ENC_C, api=api) == []  # bob's private head is not alice's to see
    assert [h.repo_id for h in search_heads(ENC_C, api=HfApi(token=OTHER_TOKEN))] == ["bob/head-c"]
    assert {h.repo_id for h in search_heads(api=api)} == {"alice/head-a", "alice/head-b"}
    assert len(search_heads(api=api, limit=1)) == 1
    # what the real client sent: tag filters, cardData, limit (no client-side filtering hides a server bug)
    sent = hub.state.list_queries[0]
    assert set(sent["filter"]) == {"hf-bridges", "bridge-head", f"hf-bridges-encoder:{ENC_A}"}
    assert sent["cardData"] == ["true"] and sent["limit"] == ["50"]

    parser = argparse.ArgumentParser()
    register_search(parser.add_subparsers(dest="action"))
    args = parser.parse_args(["search", "--encoder", ENC_A, "--json", "--token", TOKEN, "--endpoint", hub.endpoint])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["repo_id"] for r in rows} == {"alice/head-a", "alice/head-b"}
    args = parser.parse_args(["search", "--encoder", "nobody/encoder", "--endpoint", hub.endpoint])
    assert args.func(args) == 0 and "no published heads for nobody/encoder" in capsys.readouterr().out
