#!/usr/bin/env bash
# Create .venv (when missing) with PyTorch and locallearn installed in it:
#   scripts/setup.sh            what training needs
#   scripts/setup.sh dev        and the test tools (the `dev` extra); any extras, comma-separated
# PyTorch: a CUDA build where an NVIDIA GPU is present, else a CPU build (the
# local +cpu wheel where this kind of machine ships one, else PyTorch's CPU index),
# so that a laptop or CI machine never downloads several GB of CUDA libraries.
# It prints a line per step; pip's full output goes to $VENV/setup.log.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
EXTRAS=${1:-}

[ -x "$VENV/bin/python" ] || { echo "setup: creating $VENV"; "$PYTHON" -m venv "$VENV"; }
LOG="$VENV/setup.log"
: > "$LOG"

# Run a step quietly: its output goes to the log; on failure show the log's tail and path.
step() {
  local what=$1; shift
  echo "setup: $what"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup: failed while ${what}; the last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    echo "setup: full log: $LOG" >&2
    exit 1
  fi
}
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
cpu_torch() { pip install "torch==2.13.0+cpu" || pip install --index-url "$TORCH_CPU_INDEX" "torch>=2.2,<3"; }

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    step "installing PyTorch (CUDA build, several GB)" pip install "torch>=2.2,<3"
  else
    step "installing PyTorch (CPU build)" cpu_torch
  fi
fi
step "installing locallearn${EXTRAS:+ with [$EXTRAS]}" pip install -e ".${EXTRAS:+[$EXTRAS]}"
echo "setup: done ($VENV; pip's log: $LOG)"
