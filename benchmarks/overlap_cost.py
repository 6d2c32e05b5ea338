"""Cost of LoCo's overlapping blocks (`train.overlap`): a step of `overlap_step` against `train_step`, in one process.

The 8-convolution VGG of `greedy-supervised-deep` cut into K blocks, on random images: the
same net and batches are stepped by the engine's plain step, by its overlap step, and by a
minimal hand-written loop of the overlap's math (each block and the next one forwarded
together from the block's detached input, every gradient taken before any block steps).
The three alternate step by step and the median of each is kept, so a change in the
machine's load hits them alike. Writes benchmarks/results/overlap_cost.json.

    python benchmarks/overlap_cost.py [--blocks 8] [--batch 100] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer, overlap_step, train_step
from locallearn.records import machine
from locallearn.views.base import Views

RESULT = Path(__file__).parent / "results" / "overlap_cost.json"


def hand_written_overlap(blocks, optimizers, views: Views, precision: str = "fp32"):
    """Block k steps on d(loss_k + loss_{k+1} through block k+1 on block k's undetached output)/d(block k)."""
    inputs = [views.inputs]
    with torch.no_grad():
        for block in blocks[:-1]:
            inputs.append(block.layers(inputs[-1]))
    grads = []
    for k, block in enumerate(blocks):
        out, loss, _ = block(inputs[k], views)
        if k + 1 < len(blocks):
            loss = loss + blocks[k + 1](out, views)[1]
        grads.append(torch.autograd.grad(loss, list(block.trainable_parameters())))
    for block, optimizer, block_grads in zip(blocks, optimizers, grads):
        for p, g in zip(block.trainable_parameters(), block_grads):
            p.grad = g
        optimizer.step()
    return [], None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8, help="K: blocks of the 8-convolution VGG")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(1))
    data = DataSplits(x, y, x[:0], y[:0], x[:0], y[:0], 10, (1, 28, 28), 0.0, 1.0, -1.0, 1.0)
    trainer = Trainer(load_config("greedy-supervised-deep", [f"train.granularity=block:{args.blocks}", f"data.batch_size={args.batch}", "logging.progress=false"]), data)
    trainer.net.train()
    views = trainer.method.make_views(x, y, torch.arange(args.batch), torch.Generator().manual_seed(0))
    steps = {"plain (train_step)": train_step, "overlap (overlap_step)": overlap_step, "overlap, hand-written": hand_written_overlap}
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(args.steps + 2):
        for name, step in steps.items():
            start = time.perf_counter()
            step(trainer.net.blocks, trainer.optimizers, views, "fp32")
            if repeat >= 2:  # the first two of each warm up
                seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    plain = median["plain (train_step)"]
    result = {
        "command": f"python benchmarks/overlap_cost.py --blocks {args.blocks} --batch {args.batch} --steps {args.steps} --threads {args.threads}",
        "blocks": len(trainer.net.blocks),
        "machine": machine(),
        "median_step_seconds": median,
        "vs_plain": {name: value / plain for name, value in median.items()},
        "note": "steps alternate between the three in one process; absolute times follow the machine's load, the ratios less",
    }
    write_json_atomic(RESULT, result)
    print(f"K={len(trainer.net.blocks)}, batch {args.batch}, median seconds per step: " +
          ", ".join(f"{name} {value * 1000:.1f} ms ({value / plain:.2f}x)" for name, value in median.items()))


if __name__ == "__main__":
    main()
