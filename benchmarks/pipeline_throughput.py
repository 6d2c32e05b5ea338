"""Training throughput of one network on 2 CPU cores: 1 process, data parallel, and a 2-stage pipeline.

The network is supervised FF with 4 hidden layers of `--width` (layer-wise, so 4 blocks),
on the first `--subset` Fashion-MNIST training examples, one epoch, global batch 100:
- `one process, 2 threads`: plain sequential local training;
- `data parallel, 2 ranks x 1 thread`: torchrun + gloo, each rank half of every batch;
- `pipeline, 2 ranks x 1 thread`: torchrun + gloo, blocks 1-2 on rank 0 and 3-4 on rank 1,
  activations sent forward only.
Samples/s is the run's training throughput (`summary.json`, evaluation excluded). On one
machine's cores the pipeline's win is limited by how evenly the stages split and by the
copies; its real use is several GPUs, where `benchmarks/gpu_check.sh` measures it.

    python benchmarks/pipeline_throughput.py            # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from locallearn.atomic import write_json_atomic


def run(label: str, launcher: list[str], threads: int, overrides: list[str], env_threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "OMP_NUM_THREADS": str(env_threads)}
        command = [*launcher, "-m", "locallearn", "train", "ff-bench", "--out", str(out), f"train.threads={threads}", *overrides]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
        summary = json.loads((out / "summary.json").read_text())
    return {"setup": label, "samples_per_second": summary["samples_per_second"], "train_seconds": summary["train_seconds"],
            "test_accuracy": summary["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=20000)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pipeline_throughput.json")
    args = parser.parse_args()
    common = [f"data.train_subset={args.subset}", f"model.hidden=[{args.width},{args.width},{args.width},{args.width}]", "train.epochs=1",
              "train.eval_every=0", "eval.probes=false", "eval.knn=false", "logging.progress=false"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    rows = [
        run("one process, 2 threads", [sys.executable], 2, [*common, "data.batch_size=100"], 2),
        run("data parallel, 2 ranks x 1 thread", torchrun, 1, [*common, "data.batch_size=50"], 1),
        run("pipeline, 2 ranks x 1 thread", torchrun, 1, [*common, "data.batch_size=100", "distributed.mode=pipeline"], 1),
    ]
    base = rows[0]["samples_per_second"]
    print(f"{'setup':36s} {'samples/s':>10s} {'vs 1 process':>13s} {'test acc':>9s}")
    for row in rows:
        row["speedup"] = row["samples_per_second"] / base
        print(f"{row['setup']:36s} {row['samples_per_second']:10.0f} {row['speedup']:12.2f}x {row['test_accuracy']:9.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"subset": args.subset, "width": args.width, "rows": rows})


if __name__ == "__main__":
    main()
