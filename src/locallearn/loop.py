"""The epoch loop of a run and how it stops: train, validate, checkpoint and log each epoch;
on SIGINT/SIGTERM checkpoint mid-epoch and end with `Interrupted`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from locallearn.checkpoint import save_checkpoint
from locallearn.config import Config
from locallearn.engine import Trainer
from locallearn.errors import RunError
from locallearn.evaluate import classify_split
from locallearn.monitor import PhaseProgress, ProgressBar, TensorBoardLogger, epoch_line, training_left
from locallearn.rundir import data_parallel_ranks

EpochCallback = Callable[[Trainer, dict], None]


class Interrupted(RunError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; exit status 128 + signal number."""

    def __init__(self, signum: signal.Signals, message: str):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


class StopOnSignal:
    """While active, SIGINT and SIGTERM ask the trainer to stop after its current step (a second SIGINT interrupts at once)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.received: signal.Signals | None = None
        self.previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.trainer.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        self.trainer.stop_requested = True

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def train_epochs(trainer: Trainer, config: Config, preset: str, out: Path, history: list[dict], callbacks: list[EpochCallback] = ()) -> None:
    """Train until `config.train.epochs`, appending each epoch's record to `history` (and to `out`'s metrics and checkpoint)."""
    logger = TensorBoardLogger(out) if config.logging.tensorboard and trainer.dist.is_main else None
    with StopOnSignal(trainer) as stopper:
        while trainer.epoch < config.train.epochs:
            train_one_epoch(trainer, config, preset, out, history, logger, callbacks, stopper)


def checkpoint(out: Path, trainer: Trainer, preset: str, history: list[dict]) -> None:
    save_checkpoint(out, trainer, {"preset": preset, "history": history, "data_parallel_ranks": data_parallel_ranks(trainer)})


def train_one_epoch(trainer: Trainer, config: Config, preset: str, out: Path, history: list[dict], logger, callbacks, stopper: StopOnSignal) -> None:
    """Train an epoch (or the rest of one), validate, checkpoint, log; on a stop signal checkpoint mid-epoch and raise.

    Only the main rank validates and writes; the others go on to the next epoch.
    """
    main = trainer.dist.is_main
    epochs = config.train.epochs
    bar = ProgressBar(config.logging.progress and main, trainer.epoch + 1, epochs, len(trainer.batcher),
                      config.data.batch_size * data_parallel_ranks(trainer), history)
    record = trainer.train_epoch(progress=bar if main else None)
    bar.close()
    if record is None:
        signum = stopper.received or signal.SIGTERM
        if not main:
            raise Interrupted(signum, f"rank {trainer.dist.rank}: stopped with the others at epoch {trainer.epoch + 1}, step {trainer.partial.step}")
        checkpoint(out, trainer, preset, history)
        how = f"stopped by {signum.name}" if stopper.received else "stopped because another rank was"
        raise Interrupted(signum, f"{how} at epoch {trainer.epoch + 1}, step {trainer.partial.step} of "
                          f"{len(trainer.batcher)}; checkpoint saved, continue with: locallearn train {preset} --out {out} --resume")
    if not main:
        return
    data = trainer.data
    every = config.train.eval_every
    if every and (trainer.epoch % every == 0 or trainer.epoch == epochs) and data.split_size("val"):
        progress = PhaseProgress(config.logging.progress, f"epoch {trainer.epoch}/{epochs}", lines=False)
        record["val"] = classify_split(trainer.method, trainer.net, data, "val", config.data.eval_batch_size, progress)
        progress.close()
    history.append(record)
    checkpoint(out, trainer, preset, history)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if logger:
        logger.log(record)
    if config.logging.progress:
        print(epoch_line(record, trainer.method.primary, epochs, training_left(history, epochs)), file=sys.stderr)
    for callback in callbacks:
        callback(trainer, record)
