"""Kill a short training run with SIGKILL at random moments, resume it each time, compare with an uninterrupted run.

    python benchmarks/kill_resume.py --kills 20

Every kill is followed by `locallearn train ... --resume` (or a fresh start when the run
was killed before its first checkpoint). At the end the final weights and the metrics
(minus timings) must equal the uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ARGS = ["ff-supervised-small", "--quiet", "data.train_subset=2000", "model.hidden=[128,128]", "train.epochs=40",
        "data.batch_size=50", "eval.probe_epochs=1", "train.threads=1"]
CLI = [sys.executable, "-m", "locallearn", "train"]


def final_state(folder: Path):
    index = json.loads((folder / "checkpoint.json").read_text())
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("epoch_seconds", "samples_per_second")}
    return load_file(folder / index["weights"]), [strip(r) for r in metrics]


def started_training(folder: Path, since: float) -> bool:
    """The attempt has loaded its data and checkpoint: it rewrote metrics.jsonl after `since`."""
    metrics = folder / "metrics.jsonl"
    return metrics.exists() and metrics.stat().st_mtime >= since


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    subprocess.run([*CLI, *ARGS, "--out", str(root / "whole")], check=True)
    whole = json.loads((root / "whole" / "summary.json").read_text())
    epoch_seconds = whole["seconds_per_epoch"]
    parts = root / "parts"
    kills = 0
    while kills < args.kills:
        resume = ["--resume"] if (parts / "checkpoint.json").exists() else []
        started = time.time()
        proc = subprocess.Popen([*CLI, *ARGS, "--out", str(parts), *resume])
        while proc.poll() is None and not started_training(parts, started):
            time.sleep(0.01)
        # Kill anywhere in the next three epochs: inside steps, evaluation, checkpoint and metrics writes.
        try:
            proc.wait(timeout=rng.uniform(0.0, 3 * epoch_seconds))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            kills += 1
            epoch = json.loads((parts / "checkpoint.json").read_text())["epoch"] if (parts / "checkpoint.json").exists() else 0
            print(f"kill {kills}: checkpoint at epoch {epoch}", flush=True)
            continue
        if proc.returncode == 0:
            break  # finished before the next kill: fewer kills than asked, said in the last line
        raise SystemExit(f"run exited with status {proc.returncode}")
    if not (parts / "summary.json").exists():
        resume = ["--resume"] if (parts / "checkpoint.json").exists() else []
        subprocess.run([*CLI, *ARGS, "--out", str(parts), *resume], check=True)
    (a, ma), (b, mb) = final_state(root / "whole"), final_state(parts)
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and ma == mb
    print(f"{kills} SIGKILLs, every resume finished; final weights and metrics equal to the uninterrupted run: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
