#!/usr/bin/env bash
# One short check of this machine for locallearn (benchmarks/gpu_check.py does the work):
#   - the matrix-multiply peak (bf16, fp32, TF32 on a GPU), measured here;
#   - per method family: images/s, achieved TFLOP/s (FlopCounterMode) against that peak, peak memory;
#   - activation memory against depth (benchmarks/memory_depth.py), local vs end to end;
#   - correctness: device-vs-CPU equivalence, and ff-supervised-small on Fashion-MNIST if its files are here.
# With an NVIDIA GPU (nvidia-smi sees one): under 8 minutes on one H200-class card.
# Without: the CPU fallback, the same path with a few steps per part, under 2 minutes on 2 cores.
#
#   benchmarks/gpu_check.sh                 # results: $OUT/gpu_check.json if OUT is set, else benchmarks/results/
#   benchmarks/gpu_check.sh --compile       # extra arguments go to gpu_check.py (see --help)
#
# Python: $PYTHON if set; else .venv if present; else a python3 that already has torch and
# locallearn's dependencies (an offline GPU image), with src/ on PYTHONPATH; else `make setup`.
# Exit status: 0 when the correctness checks pass, 1 when one fails, 124 when it ran out of time.
set -euo pipefail
cd "$(dirname "$0")/.."

has_deps() { "$1" -c "import torch, numpy, pydantic, yaml, safetensors, matplotlib" 2>/dev/null; }

if [ -n "${PYTHON:-}" ]; then
  :
elif [ -x .venv/bin/python ]; then
  PYTHON=.venv/bin/python
elif command -v python3 >/dev/null && has_deps python3; then
  PYTHON=python3
else
  make setup
  PYTHON=.venv/bin/python
fi
if ! "$PYTHON" -c "import locallearn" 2>/dev/null; then
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  DEVICE=cuda
  LIMIT=470  # seconds for gpu_check.py; the parts are budgeted inside it (440 s)
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
  if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: nvidia-smi sees a GPU but $PYTHON's torch $("$PYTHON" -c 'import torch; print(torch.__version__)') has no CUDA; use a CUDA build (PYTHON=...)" >&2
    exit 1
  fi
else
  DEVICE=cpu
  LIMIT=115
  echo "gpu_check: no NVIDIA GPU found (nvidia-smi), running the CPU fallback"
fi

export PYTHONUNBUFFERED=1
status=0
timeout --signal=TERM --kill-after=10 "$LIMIT" nice -n "${NICE:-0}" "$PYTHON" benchmarks/gpu_check.py --device "$DEVICE" "$@" || status=$?
if [ "$status" = 124 ]; then
  echo "gpu_check: stopped after $LIMIT s; the JSON holds the parts that finished" >&2
fi
exit "$status"
