"""What a run shows while it runs: the epoch bar, the per-epoch line with the run's ETA, the
final evaluation's phases, and TensorBoard scalars.

Everything here only reports: nothing decides how training or evaluation go.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from locallearn.errors import UsageError


def status(enabled: bool, text: str) -> None:
    """One line on a terminal's stderr saying what a command is doing now (when `enabled`), so that its set-up is no silence.

    Not on a captured or redirected stderr, where an error stays the only line.
    """
    if enabled and sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s` or `1h02m`: a duration as a person reads it."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def training_left(history: list[dict], epochs: int) -> float | None:
    """Seconds of training left to reach `epochs`: epochs left × the mean epoch time so far (None before the first epoch)."""
    if not history:
        return None
    mean = sum(r["epoch_seconds"] for r in history) / len(history)
    return mean * max(epochs - history[-1]["epoch"], 0)


class ProgressBar:
    """A tqdm bar over the samples of an epoch with each block's running loss and the whole run's training time left.

    The run's time left is the epochs after this one at the mean epoch time of `history`
    (before the first epoch has ended: at this epoch's own pace) plus this epoch's rest.
    """

    def __init__(self, enabled: bool, epoch: int, epochs: int, total_steps: int, batch_size: int, history: list[dict] = ()):
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps * batch_size, desc=f"epoch {epoch}/{epochs}", leave=False,
                        disable=None if enabled else True, file=sys.stderr, unit="sample", unit_scale=True)
        self.batch_size, self.epochs_after = batch_size, epochs - epoch
        self.mean_epoch = sum(r["epoch_seconds"] for r in history) / len(history) if history else None
        self.start = time.perf_counter()

    def __call__(self, step: int, total: int, sums: list[dict]) -> None:
        if step % 10 == 0 or step == total:
            postfix = {f"loss{i + 1}": f"{float(s['loss']) / step:.3f}" for i, s in enumerate(sums) if "loss" in s}
            epoch_seconds = self.mean_epoch or (time.perf_counter() - self.start) * total / step
            postfix["run_left"] = format_duration(epoch_seconds * (self.epochs_after + 1 - step / total))
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(step * self.batch_size - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def epoch_line(record: dict, primary: str, epochs: int, left: float | None) -> str:
    """`epoch 3/10: loss layer1=… val_acc=… (5.1s, 10736 samples/s; about 36s of training left)`."""
    losses = " ".join(f"{name}={m['loss']:.4f}" for name, m in record["blocks"].items())
    accuracy = record.get("val", {}).get(primary)
    val = f" val_acc={accuracy:.4f}" if accuracy is not None else ""
    eta = f"; about {format_duration(left)} of training left" if left else ""
    return (f"epoch {record['epoch']}/{epochs}: loss {losses}{val} "
            f"({record['epoch_seconds']:.1f}s, {record['samples_per_second']:.0f} samples/s{eta})")


class PhaseProgress:
    """Progress of an evaluation in named phases, called as `progress(phase, done, total)`.

    On a terminal each phase has a bar; elsewhere (a log file, a captured stream) each phase
    is one line as it starts, and one more with its share done every LINE_EVERY seconds.
    `close` prints one line with the time of every phase. With `lines=False` (a short
    evaluation repeated every epoch) only the terminal's bars show.
    """

    LINE_EVERY = 5.0

    def __init__(self, enabled: bool, title: str = "final evaluation", lines: bool = True):
        from tqdm import tqdm

        self.tqdm, self.enabled, self.title, self.lines = tqdm, enabled, title, lines
        self.bar = None
        self.phase: str | None = None
        self.times: dict[str, float] = {}
        self.start = self.phase_start = self.last_line = time.perf_counter()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            self._end_phase()
            self.phase, self.phase_start = phase, time.perf_counter()
            if self.enabled:
                self.bar = self.tqdm(total=total, desc=f"{self.title}: {phase}", leave=False, disable=None, file=sys.stderr)
                self._line(f"{phase}…")
        if self.bar is None:
            return
        if not self.bar.disable:
            self.bar.update(done - self.bar.n)
        elif time.perf_counter() - self.last_line >= self.LINE_EVERY and total:
            self._line(f"{phase} {100 * done // total}%")

    def _line(self, text: str) -> None:
        """Print `text` as a line of its own when no bar shows (not on a terminal) and lines are wanted."""
        if self.lines and (self.bar is None or self.bar.disable):
            print(f"{self.title}: {text}", file=sys.stderr, flush=True)
            self.last_line = time.perf_counter()

    def _end_phase(self) -> None:
        if self.phase is not None:
            self.times[self.phase] = self.times.get(self.phase, 0.0) + time.perf_counter() - self.phase_start
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self._end_phase()
        self.phase = None
        if self.enabled and self.lines and self.times:
            phases = ", ".join(f"{name} {format_duration(t)}" for name, t in self.times.items())
            self._line(f"{format_duration(time.perf_counter() - self.start)} ({phases})")


class TensorBoardLogger:
    """Scalars of each epoch record into `out/tensorboard` (needs the optional `tensorboard` package)."""

    def __init__(self, out: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("logging.tensorboard=true needs the tensorboard package: pip install 'locallearn[tensorboard]'") from None
        self.writer = SummaryWriter(str(out / "tensorboard"))

    def log(self, record: dict) -> None:
        step = record["epoch"]
        for block, metrics in record["blocks"].items():
            for key, value in metrics.items():
                self.writer.add_scalar(f"{block}/{key}", value, step)
        for key, value in record.get("val", {}).items():
            self.writer.add_scalar(f"val/{key}", value, step)
        self.writer.add_scalar("lr", record["lr"], step)
        self.writer.flush()
