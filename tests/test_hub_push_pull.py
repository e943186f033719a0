"""Push and pull heads and full models over real HTTP on 127.0.0.1 with the real huggingface_hub client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import make_encoder, topic_texts
from hub_server import OTHER_TOKEN, TOKEN, hub_fixture
from huggingface_hub import HfApi, ModelCard, constants

from hf_bridges import BridgeForSequenceClassification
from hf_bridges.heads.cards import model_card
from hf_bridges.heads.format import CARD_NAME, HEAD_FILES, HeadFormatError
from hf_bridges.heads.hub import load_head, pull_head

hub = pytest.fixture(hub_fixture)
TEXTS = topic_texts(2, seed=11)[0]


def last_bias(model):
    """The bias of the classifier's last layer (the aligned component's, for the summed default head)."""
    return [p for n, p in model.head.classifier.named_parameters() if n.endswith("bias")][-1]


@pytest.fixture(scope="module")
def model(tokenizer, anchor_texts):
    return BridgeForSequenceClassification.from_encoder(
        make_encoder(0),
        anchors=anchor_texts,
        tokenizer=tokenizer,
        num_labels=5,
        id2label={i: f"topic{i}" for i in range(5)},
    ).eval()


def logits(model, tokenizer, texts=TEXTS):
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


def attach(head, tokenizer, **kwargs):
    return BridgeForSequenceClassification.from_encoder(make_encoder(0), head=head, tokenizer=tokenizer, **kwargs)


def run_fresh(script: str, env: dict, cwd, *args: str) -> dict:
    """Run ``script`` in a new interpreter (fresh imports, fresh caches) and return the JSON it prints last."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    full_env.update(env)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line[line.index('{"') :] for line in done.stdout.splitlines() if '{"' in line]
    assert lines, f"no JSON in the output:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return json.loads(lines[-1])


def test_push_then_attach_by_repo_id(hub, model, tokenizer):
    info = model.push_head_to_hub("alice/topics-head", token=TOKEN)
    files = HfApi(token=TOKEN).model_info("alice/topics-head").siblings
    assert sorted(f.rfilename for f in files) == sorted([".gitattributes", CARD_NAME, *HEAD_FILES])
    stitched = attach("alice/topics-head", tokenizer)
    assert torch.equal(logits(stitched, tokenizer), logits(model, tokenizer))
    calls = {
        (method, path.split("/resolve/")[0] + "/resolve" if "/resolve/" in path else path)
        for method, path in hub.state.requests
    }
    assert {
        ("POST", "/api/repos/create"),
        ("POST", "/api/models/alice/topics-head/preupload/main"),
        ("POST", "/api/models/alice/topics-head/commit/main"),
        ("GET", "/alice/topics-head/resolve"),
    } <= calls
    assert info.oid == hub.state.repos["alice/topics-head"].branches["main"]
    card = (pull_head("alice/topics-head") / CARD_NAME).read_text()
    assert "alice/topics-head" in card and "library_name: hf_bridges" in card


def test_pull_a_pinned_revision(hub, model, tokenizer):
    first = model.push_head_to_hub("alice/versions", token=TOKEN).oid
    expected_first = logits(model, tokenizer)
    with torch.no_grad():
        last_bias(model).add_(1.0)
    try:
        model.push_head_to_hub("alice/versions", token=TOKEN)
        expected_second = logits(model, tokenizer)
    finally:
        with torch.no_grad():
            last_bias(model).sub_(1.0)
    assert torch.equal(logits(attach("alice/versions", tokenizer, head_revision=first), tokenizer), expected_first)
    assert torch.equal(logits(attach("alice/versions", tokenizer), tokenizer), expected_second)
    with pytest.raises(HeadFormatError, match="no revision"):
        pull_head("alice/versions", revision="0" * 40)


def test_private_head_is_refused_without_a_token(hub, model, tokenizer):
    model.push_head_to_hub("alice/secret-head", token=TOKEN, private=True)
    with pytest.raises(HeadFormatError, match="private"):
        load_head("alice/secret-head", token=False)
    with pytest.raises(HeadFormatError, match="private"):
        load_head("alice/secret-head", token=OTHER_TOKEN)
    stitched = attach("alice/secret-head", tokenizer, token=TOKEN)
    assert torch.equal(logits(stitched, tokenizer), logits(model, tokenizer))


def test_repos_that_are_not_heads(hub, model):
    api = HfApi(token=TOKEN)
    api.create_repo("alice/just-a-readme")
    api.upload_file(path_or_fileobj=b"# hello\n", path_in_repo="README.md", repo_id="alice/just-a-readme")
    with pytest.raises(HeadFormatError, match="not a bridge head"):
        load_head("alice/just-a-readme")
    model.push_to_hub("alice/full-model", token=TOKEN)
    with pytest.raises(HeadFormatError, match="full bridge model, not a head"):
        load_head("alice/full-model")
    with pytest.raises(HeadFormatError, match="no head repo"):
        load_head("alice/does-not-exist")
    with pytest.raises(HeadFormatError, match="no head folder"):
        load_head("./not/a/folder/")


def test_offline_mode_reads_the_cache(hub, model, monkeypatch):
    model.push_head_to_hub("alice/cached-head", token=TOKEN)
    online = load_head("alice/cached-head")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = load_head("alice/cached-head")
    assert all(torch.equal(offline.state_dict[k], v) for k, v in online.state_dict.items())
    with pytest.raises(HeadFormatError, match="not in the local Hugging Face cache"):
        load_head("alice/never-pulled")


@pytest.mark.subprocess
def test_head_pulled_in_a_fresh_process(hub, model, tokenizer, tiny_encoder_dir, tmp_path):
    """A new interpreter (fresh imports and caches) pulls a pinned revision of the head over HTTP and attaches it."""
    oid = model.push_head_to_hub("alice/fresh-head", token=TOKEN).oid
    script = """
        import json, sys, torch
        from transformers import AutoTokenizer
        from hf_bridges import BridgeForSequenceClassification
        encoder, revision, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
        model = BridgeForSequenceClassification.from_encoder(encoder, head="alice/fresh-head", head_revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(encoder)
        with torch.no_grad():
            logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
        print(json.dumps({"logits": logits.tolist(), "score": model.stitch_report.score}))
    """
    expected = logits(model, tokenizer)
    online = run_fresh(script, hub.env, tmp_path, tiny_encoder_dir, oid, json.dumps(TEXTS))
    assert torch.allclose(torch.tensor(online["logits"]), expected, atol=1e-6)
    assert online["score"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.subprocess
def test_full_model_push_to_hub_loads_with_remote_code_only(hub, model, tokenizer, tmp_path):
    """transformers' own push_to_hub; a fresh process that cannot import hf_bridges loads it with remote code."""
    model.tokenizer = tokenizer
    model.push_to_hub("alice/full-topics", token=TOKEN)
    model_card(model, repo_id="alice/full-topics").push_to_hub("alice/full-topics", token=TOKEN)
    card = ModelCard.load("alice/full-topics", token=TOKEN)
    assert card.data.library_name == "transformers" and "trust_remote_code=True" in card.text
    files = {f.rfilename for f in HfApi(token=TOKEN).model_info("alice/full-topics").siblings}
    assert {"config.json", "model.safetensors", "configuration_bridge.py", "modeling_bridge.py"} <= files
    script = """
        import importlib.abc, json, sys

        class NoBridges(importlib.abc.MetaPathFinder):   # hide the installed package (editable finders too)
            def find_spec(self, name, path, target=None):
                if name == "hf_bridges" or name.startswith("hf_bridges."):
                    raise ModuleNotFoundError(f"{name} is hidden in this test")
                return None

        sys.meta_path.insert(0, NoBridges())
        try:
            import hf_bridges
            raise SystemExit("hf_bridges is importable: the test would not test remote code")
        except ModuleNotFoundError:
            pass
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained("alice/full-topics", trust_remote_code=True).eval()
        # trust_remote_code here too: the config's auto_map makes AutoTokenizer ask otherwise (tokenizer is plain)
        tokenizer = AutoTokenizer.from_pretrained("alice/full-topics", trust_remote_code=True)
        with torch.no_grad():
            logits = model(**tokenizer(json.loads(sys.argv[1]), padding=True, return_tensors="pt")).logits
        print(json.dumps({"logits": logits.tolist(), "module": type(model).__module__}))
    """
    out = run_fresh(script, hub.env, tmp_path, json.dumps(TEXTS))
    assert out["module"].startswith("transformers_modules.")
    assert torch.allclose(torch.tensor(out["logits"]), logits(model, tokenizer), atol=1e-5)
