"""Peak training memory of one backbone at several granularities (only where the graph is cut changes).

Each granularity runs in a fresh process: it builds the network of `--preset` with
`--arch`, takes `--steps` training steps on random images, and reports the peak memory
above what the process held just before the first step: `torch.cuda.max_memory_allocated`
on CUDA, the peak resident set size (`ru_maxrss`) on CPU. Block-wise training keeps only
one block's activations alive for a backward pass, so it should need less than end to end.
The resident set moves by tens of MiB from run to run with the allocator, so each row also
gives the peak of the activations saved for backward (tensors the autograd graph holds,
parameters left out, each storage counted once): the same on every run and every device.

    python benchmarks/memory_granularity.py                       # ResNet-18, 32x32 RGB, batch 64, CPU: ~1 min
    python benchmarks/memory_granularity.py --device cuda --arch resnet50 --size 224 --batch 64 --width 64
    python benchmarks/memory_granularity.py --overlap ...          # with LoCo's overlapping blocks (train.overlap)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer
from locallearn.nn.backbones import BUILDERS
from memory_depth import LiveSavedBytes


def rss_mb() -> float:
    """The current resident set size in MiB (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def measure(args: argparse.Namespace, granularity: str) -> dict:
    """Peak memory (MiB) above the pre-training baseline over `args.steps` steps at `granularity`."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = (args.channels, args.size, args.size)
    x = torch.randn(args.batch * args.steps, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(x.shape[0], dtype=torch.long)
    data = DataSplits(x, y, x[:0], y[:0], x[:0], y[:0], 10, shape, 0.0, 1.0, -1.0, 1.0).to(device)
    overrides = [f"model.arch={args.arch}", f"model.width={args.width}", f"train.granularity={granularity}", f"data.batch_size={args.batch}",
                 f"train.overlap={str(args.overlap).lower()}", "logging.progress=false"]
    trainer = Trainer(load_config(args.preset, overrides), data, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    else:
        baseline = rss_mb()
    saved = LiveSavedBytes(trainer.net.parameters())
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        trainer.train_epoch()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"granularity": granularity, "blocks": len(trainer.net.blocks), "baseline_mb": baseline, "peak_above_baseline_mb": peak - baseline,
            "saved_activations_mb": saved.peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="blockwise-barlow")
    parser.add_argument("--arch", default="resnet18", choices=sorted(BUILDERS))
    parser.add_argument("--width", type=int, default=32, help="ResNet base width")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="images per step (the step holds two views of each)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overlap", action="store_true", help="train.overlap=true: each block's loss also trains the block before it")
    parser.add_argument("--granularities", nargs="+", default=["end-to-end", "block:2", "block:4"])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return
    settings = [f"--{key}={getattr(args, key)}" for key in ("preset", "arch", "width", "size", "channels", "batch", "steps", "device", "threads")]
    settings += ["--overlap"] * args.overlap
    rows = []
    for granularity in args.granularities:
        out = subprocess.run([sys.executable, __file__, *settings, f"--child={granularity}"], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.splitlines()[-1]))
    reference = rows[0]["peak_above_baseline_mb"]
    width = f" width {args.width}" if args.arch.startswith("resnet") else ""
    print(f"{args.arch}{width}, {args.channels}x{args.size}x{args.size}, batch {args.batch}, {args.device}{', overlap' * args.overlap}")
    print(f"{'granularity':<12} {'blocks':>6} {'peak MiB':>10} {'vs ' + rows[0]['granularity']:>16} {'saved activations MiB':>22}")
    for row in rows:
        print(f"{row['granularity']:<12} {row['blocks']:>6} {row['peak_above_baseline_mb']:>10.1f} {row['peak_above_baseline_mb'] / reference:>16.2f} "
              f"{row['saved_activations_mb']:>22.1f}")
    if args.out:
        write_json_atomic(args.out, {"settings": settings, "rows": rows})


if __name__ == "__main__":
    main()
