"""``import hf_bridges`` is light, and the bridge classes are registered with the Auto classes exactly when
transformers' Auto modules load, in any import order (issue 22: nothing is decided from ``sys.argv``; issue 21.7: a
stitch run pays no registration before it loads a model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

REGISTERED = (
    "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
    "from transformers.models.auto.modeling_auto import MODEL_MAPPING\n"
    "config = CONFIG_MAPPING['hf_bridges'] if 'hf_bridges' in CONFIG_MAPPING else None\n"
    "out['registered'] = config is not None and config in MODEL_MAPPING\n"
)
ORDERS = {
    "package first": "import hf_bridges\nout['light'] = 'torch' not in sys.modules\nfrom transformers import AutoModel\n",
    "transformers first": "from transformers import AutoModel\nimport hf_bridges\nout['light'] = True\n",
    "a model class first": (
        "from hf_bridges.modeling.modeling_bridge import BridgeModel\nout['light'] = True\n"
        "from transformers import AutoModel\n"
    ),
    "a public name first": "import hf_bridges\nout['light'] = True\nhf_bridges.BridgeForSequenceClassification\n",
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_auto_classes_are_registered_in_any_import_order(order):
    script = "import json, sys\nout = {}\n" + ORDERS[order] + REGISTERED + "print(json.dumps(out))\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"light": True, "registered": True}
