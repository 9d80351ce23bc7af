#!/usr/bin/env bash
# Set up (first time only) and run the test suite: `bash scripts/test.sh` (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The vLLM server's own virtualenv (.venv-vllm, ~9 minutes the first time) for the `vllm` tests;
# SYNTHLLM_SKIP_VLLM=1 skips it, and without it those tests skip.
if [ "${SYNTHLLM_SKIP_VLLM:-0}" != 1 ]; then
  bash scripts/setup_vllm.sh || echo "vLLM could not be installed; the vllm tests will skip" >&2
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python -m pytest -q "$@"
