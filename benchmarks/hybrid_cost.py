"""Share of a training step spent making hybrid-image negatives, for `ff-unsupervised-small`.

Times building the views (hybrid masks + mixing) and the training steps separately over
the same batches, best of 5 passes each.

    python benchmarks/hybrid_cost.py
"""

from __future__ import annotations

import time

import torch

from locallearn.config import load_config
from locallearn.data import load_dataset
from locallearn.engine import Trainer, train_step


def best_ms_per_step(fn, steps: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) / steps * 1e3


def main() -> None:
    config = load_config("ff-unsupervised-small", ["logging.progress=false"])
    data = load_dataset(config.data.name, train_subset=3000)
    trainer = Trainer(config, data)
    generator = torch.Generator().manual_seed(0)
    batches = list(trainer.batcher.batches(0))
    views = [trainer.method.make_views(x, y, i, generator) for x, y, i in batches]

    def make_views():
        for x, y, i in batches:
            trainer.method.make_views(x, y, i, generator)

    def steps():
        for v in views:
            train_step(trainer.net.blocks, trainer.optimizers, v)

    steps()
    v, s = best_ms_per_step(make_views, len(batches)), best_ms_per_step(steps, len(batches))
    print(f"hybrid views {v:.2f} ms/step, training step {s:.2f} ms/step: views are {100 * v / (v + s):.1f}% of a step")


if __name__ == "__main__":
    main()
