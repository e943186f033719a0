"""Nothing breaks for users: a head and a full model saved by the first landing (format 1) still load.

The fixtures in tests/fixtures/format1 were written by the hf_bridges code of the first landing (tiny random
BERT, 10 anchors) together with the logits it gave; every loader must reproduce them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_bridges import BridgeForSequenceClassification

FIXTURES = Path(__file__).parent / "fixtures" / "format1"
EXPECTED = json.loads((FIXTURES / "expected_logits.json").read_text())


def _inputs():
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "encoder")
    return tokenizer(EXPECTED["texts"], padding=True, return_tensors="pt")


def test_format1_model_loads_through_auto_classes():
    model = AutoModelForSequenceClassification.from_pretrained(FIXTURES / "model").eval()
    assert isinstance(model, BridgeForSequenceClassification)
    with torch.no_grad():
        logits = model(**_inputs()).logits
    torch.testing.assert_close(logits, torch.tensor(EXPECTED["logits"]), atol=1e-5, rtol=0)
    assert model.config.id2label[0] == "t0"


def test_format1_head_attaches_to_its_encoder():
    model = BridgeForSequenceClassification.from_encoder(str(FIXTURES / "encoder"), head=str(FIXTURES / "head")).eval()
    with torch.no_grad():
        logits = model(**_inputs()).logits
    torch.testing.assert_close(logits, torch.tensor(EXPECTED["logits"]), atol=1e-5, rtol=0)


def _logits_without_hf_bridges(model_dir: Path, inputs: dict, tmp_path: Path) -> torch.Tensor:
    """Logits of a saved full model loaded with ``trust_remote_code`` in a fresh interpreter without hf_bridges:
    only the remote code shipped next to the weights runs."""
    (tmp_path / "inputs.json").write_text(json.dumps({k: v.tolist() for k, v in inputs.items()}))
    repo = str(Path(__file__).resolve().parents[1])
    script = textwrap.dedent(
        f"""
        import json, os, sys
        sys.path = [p for p in sys.path if p and os.path.abspath(p) != {repo!r}]
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
        try:
            import hf_bridges
            raise SystemExit("hf_bridges is importable: the test would prove nothing")
        except ImportError:
            pass
        import torch
        from transformers import AutoModelForSequenceClassification
        m = AutoModelForSequenceClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        inputs = {{k: torch.tensor(v) for k, v in json.load(open({str(tmp_path / "inputs.json")!r})).items()}}
        with torch.no_grad():
            print(json.dumps(m.eval()(**inputs).logits.tolist()))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.subprocess
def test_format1_model_loads_with_trust_remote_code(tmp_path):
    """A fresh interpreter without hf_bridges runs the remote code that was shipped with the format-1 model."""
    logits = _logits_without_hf_bridges(FIXTURES / "model", _inputs(), tmp_path)
    torch.testing.assert_close(logits, torch.tensor(EXPECTED["logits"]), atol=1e-5, rtol=0)


# Release 0.2 (tests/fixtures/release-0.2/make_fixtures.py): the default head, without (format 2) and with
# (format 3) an alignment set, as a full model and as a head-only folder, with the logits that release gave.
RELEASE_02 = Path(__file__).parent / "fixtures" / "release-0.2"
RELEASE_02_EXPECTED = json.loads((RELEASE_02 / "expected_logits.json").read_text())


def _release_02_inputs():
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "encoder")
    return tokenizer(RELEASE_02_EXPECTED["texts"], padding=True, return_tensors="pt")


@pytest.mark.parametrize("name", ["format2", "format3"])
def test_release_02_model_loads_through_auto_classes(name):
    model = AutoModelForSequenceClassification.from_pretrained(RELEASE_02 / name / "model").eval()
    assert isinstance(model, BridgeForSequenceClassification)
    with torch.no_grad():
        logits = model(**_release_02_inputs()).logits
    expected = torch.tensor(RELEASE_02_EXPECTED[name]["model_logits"])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["format2", "format3"])
def test_release_02_head_attaches_to_its_encoder(name):
    encoder, head = str(FIXTURES / "encoder"), str(RELEASE_02 / name / "head")
    model = BridgeForSequenceClassification.from_encoder(encoder, head=head).eval()
    with torch.no_grad():
        logits = model(**_release_02_inputs()).logits
    expected = torch.tensor(RELEASE_02_EXPECTED[name]["attached_logits"])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


@pytest.mark.subprocess
@pytest.mark.parametrize("name", ["format2", "format3"])
def test_release_02_model_loads_with_trust_remote_code(name, tmp_path):
    logits = _logits_without_hf_bridges(RELEASE_02 / name / "model", _release_02_inputs(), tmp_path)
    expected = torch.tensor(RELEASE_02_EXPECTED[name]["model_logits"])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
