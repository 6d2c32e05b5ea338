"""Timing an engine epoch against a hand-written loop of the same math, shared by the speed benchmarks."""

from __future__ import annotations

import time
from typing import Callable

from locallearn.engine import Trainer


def time_epochs(trainer: Trainer, hand_written_epoch: Callable[[int], None], repeats: int) -> dict[str, list[float]]:
    """Seconds of `repeats` alternating epochs: the engine's, then `hand_written_epoch(round)`, in the same process.

    Alternating makes both see the same machine load; the caller reports the best of each.
    """
    times = {"locallearn": [], "hand-written": []}
    for round_ in range(repeats):
        trainer.epoch = 0
        start = time.perf_counter()
        trainer.train_epoch()
        times["locallearn"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hand_written_epoch(round_)
        times["hand-written"].append(time.perf_counter() - start)
    return times
