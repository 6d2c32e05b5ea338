"""Speed of one `ff-bench` training epoch: locallearn's engine vs a minimal hand-written PyTorch loop.

Both do the same math on the same data in the same process: 3x1000 ReLU layers, batch 100,
Adam 1e-3, the label written into the image, uniform wrong labels, RMS input norm, a
softplus loss around the threshold, positives and negatives in one pass per layer.
The two are timed alternately (`--repeats` rounds); the table gives the best of each,
the achieved GFLOP/s and the matrix-multiply rate of this machine measured in the same run.

    python benchmarks/ff_speed.py                 # full Fashion-MNIST epoch (55k examples)
    python benchmarks/ff_speed.py --subset 5000   # quick look
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from epoch_timing import time_epochs
from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import load_dataset
from locallearn.engine import Trainer


def hand_written_epoch(layers, optimizers, x_all, y_all, low, high, batch_size, generator) -> None:
    """The reference: FF supervised training written out by hand, no library code."""
    n = x_all.shape[0]
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        x, y = x_all[idx].flatten(1), y_all[idx]
        wrong = (y + torch.randint(1, 10, y.shape, generator=generator)) % 10
        h = torch.cat([x, x])
        h[:, :10] = low
        h[torch.arange(h.shape[0]), torch.cat([y, wrong])] = high
        b = x.shape[0]
        for linear, optimizer in zip(layers, optimizers):
            z = F.relu(linear(h * torch.rsqrt(h.square().mean(1, keepdim=True) + 1e-8)))
            g = z.square().sum(1)
            threshold = z.shape[1]
            loss = torch.cat([F.softplus(threshold - g[:b]), F.softplus(g[b:] - threshold)]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            h = z.detach()


def matmul_gflops(size: int = 2000, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def epoch_flops(n: int, widths: list[int]) -> float:
    """Multiply-add FLOPs of one epoch: 2n inputs (pos+neg), per layer the forward and the weight-gradient matmul.

    No input-gradient matmul: every FF layer's input is detached (or the data), so backward
    never computes one (`FlopCounterMode` agrees; tests/test_benchmarks.py checks it).
    """
    return sum(2 * 2 * (2 * n) * i * o for i, o in zip(widths, widths[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=None, help="train on the first N examples only")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ff_speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [] if args.subset is None else [f"data.train_subset={args.subset}"]
    config = load_config("ff-bench", overrides + ["logging.progress=false"])
    data = load_dataset(config.data.name, train_subset=config.data.train_subset, val_size=config.data.val_size)
    n, widths = data.train_x.shape[0], [784, *config.model.hidden]

    trainer = Trainer(config, data)
    torch.manual_seed(0)
    layers = [nn.Linear(i, o) for i, o in zip(widths, widths[1:])]
    optimizers = [torch.optim.Adam(layer.parameters(), lr=config.optim.lr) for layer in layers]
    generator = torch.Generator().manual_seed(0)

    times = time_epochs(trainer, lambda _: hand_written_epoch(layers, optimizers, data.train_x, data.train_y, data.pixel_low,
                                                              data.pixel_high, config.data.batch_size, generator), args.repeats)
    peak = matmul_gflops()
    flops = epoch_flops(n, widths)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "examples": n,
        "threads": torch.get_num_threads(),
        "seconds": times,
        "best_seconds": best,
        "ratio_locallearn_over_hand": best["locallearn"] / best["hand-written"],
        "epoch_tflop": flops / 1e12,
        "achieved_gflops": {k: flops / v / 1e9 for k, v in best.items()},
        "matmul_peak_gflops": peak,
        "math_bound_seconds": flops / (peak * 1e9),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"ff-bench epoch on {n} examples, {result['threads']} threads")
    for k, v in best.items():
        print(f"  {k:13s} {v:7.2f} s   {result['achieved_gflops'][k]:6.1f} GFLOP/s")
    print(f"  ratio locallearn / hand-written = {result['ratio_locallearn_over_hand']:.3f}")
    print(f"  matmul peak {peak:.1f} GFLOP/s -> math alone needs {result['math_bound_seconds']:.1f} s")


if __name__ == "__main__":
    main()
