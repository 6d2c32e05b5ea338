#!/usr/bin/env bash
# Create .venv (when missing) with PyTorch and locallearn installed in it.
# PyTorch: a CUDA build where an NVIDIA GPU is present, else a CPU build (the
# local +cpu wheel where this kind of machine ships one, else PyTorch's CPU index),
# so that a laptop or CI machine never downloads several GB of CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install "torch>=2.2,<3"
  else
    $pip install "torch==2.13.0+cpu" 2>/dev/null || $pip install --index-url "$TORCH_CPU_INDEX" "torch>=2.2,<3"
  fi
fi
$pip install -e ".[dev,tensorboard]"
