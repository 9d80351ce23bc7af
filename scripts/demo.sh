#!/usr/bin/env bash
# Set up (first time only) and run the demo: `bash scripts/demo.sh --docs 20 --out runs/demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1
exec synthllm demo "$@"
