#!/usr/bin/env bash
# The accuracy runs of the README's results table, one after another, into runs/bench/.
# Full list: roughly 10.7 hours on 2 quiet CPU cores (the sum of the runs timed in the README). Pass preset names to run only some: benchmarks/accuracy.sh backprop-mlp
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/bench
for preset in "${@:-ff-supervised-small backprop-mlp ff-supervised greedy-supervised e2e-supervised greedy-supervised-deep e2e-supervised-deep blockwise-barlow e2e-barlow blockwise-simclr e2e-simclr blockwise-vicreg e2e-vicreg ff-conv ff-unsupervised ff-unsupervised-hinton ff-unsupervised-local ff-selfcontrastive}"; do
  for p in $preset; do
    [ -f "runs/bench/$p/summary.json" ] && continue
    .venv/bin/locallearn train "$p" --out "runs/bench/$p" --quiet
  done
done
.venv/bin/locallearn report runs/bench/*/ --out runs/bench  # the comparison table and plots, in runs/bench/report.md
