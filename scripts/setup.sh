#!/usr/bin/env bash
# Create .venv and install dreamdd into it (editable, with the test tools).
# Torch: a GPU machine gets the default build; a machine without one gets a CPU build (a local CPU wheel when
# pip can see one, else PyTorch's CPU index), never the multi-GB CUDA build it could not use.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" torch
  elif ! "${PIP[@]}" "torch==${DREAMDD_TORCH_VERSION:-2.13.0}+cpu" 2>/dev/null; then
    "${PIP[@]}" torch --index-url "${DREAMDD_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
"${PIP[@]}" -e ".[test]"
echo "dreamdd is installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
