"""A training run and its folder: config.yaml, metrics.jsonl, checkpoints, summary.json.

This is where the engine meets the file system: it loads the data, trains epoch by
epoch, evaluates on the validation split, checkpoints atomically after every epoch,
and at the end measures the test set once and writes the summary.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

import torch
import yaml

from locallearn.atomic import write_json_atomic, write_text_atomic
from locallearn.checkpoint import load_checkpoint, read_index, save_checkpoint
from locallearn.config import Config, apply_overrides, load_yaml, validate
from locallearn.data import load_dataset
from locallearn.distributed.context import DistContext, close_distributed, init_distributed, pick_device
from locallearn.engine import Trainer
from locallearn.errors import LocalLearnError, RunError, UsageError
from locallearn.evaluate import classify_split, linear_probes, split_features, split_labels
from locallearn.knn import knn_accuracy
from locallearn.records import code_version, machine

EpochCallback = Callable[[Trainer, dict], None]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare_out_dir(out: Path) -> None:
    """Create `out` and check that it is writable, before any work is done."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise RunError(f"cannot write to output folder {out}: {err.strerror}") from None


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    diffs = []
    for key in keys:
        path = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            diffs += config_differences(a[key], b[key], path + ".")
        elif a.get(key) != b.get(key):
            diffs.append(path)
    return diffs


RESUMABLE_CHANGES = ("train.epochs", "train.threads", "data.dir", "data.workers", "logging.progress", "logging.tensorboard")


def resume_config(out: Path, preset: str, overrides: list[str]) -> Config:
    """The saved config of the run in `out` with `overrides` applied; only RESUMABLE_CHANGES may differ."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        raise RunError(f"no run to resume in {out} (config.yaml is missing)")
    saved_preset = read_index(out).get("preset")
    if saved_preset != preset:
        raise UsageError(f"--resume: the run in {out} was made from preset {saved_preset!r}, not {preset!r}")
    tree = load_yaml(saved_path.read_text())
    saved, requested = validate(tree), validate(apply_overrides(tree, overrides))
    diffs = [d for d in config_differences(saved.to_dict(), requested.to_dict()) if d not in RESUMABLE_CHANGES]
    if diffs:
        raise UsageError(f"--resume: the run in {out} was made with other settings ({', '.join(diffs)}); drop those overrides or use a new --out")
    return requested


class ProgressBar:
    """A tqdm bar over the samples of an epoch with each block's running loss (rate in samples/s)."""

    def __init__(self, enabled: bool, epoch: int, epochs: int, total_steps: int, batch_size: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps * batch_size, desc=f"epoch {epoch}/{epochs}", leave=False,
                        disable=None if enabled else True, file=sys.stderr, unit="sample", unit_scale=True)
        self.batch_size = batch_size

    def __call__(self, step: int, total: int, sums: list[dict]) -> None:
        if step % 10 == 0 or step == total:
            self.bar.set_postfix({f"loss{i + 1}": f"{float(s['loss']) / step:.3f}" for i, s in enumerate(sums) if "loss" in s}, refresh=False)
            self.bar.update(step * self.batch_size - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def evaluate_final(trainer: Trainer, config: Config) -> tuple[dict, list[dict]]:
    """Test and validation accuracy of every classifier, per-block linear probes and kNN, and the readout."""
    data, method, net = trainer.data, trainer.method, trainer.net
    batch = config.data.eval_batch_size
    val = classify_split(method, net, data, "val", batch) if data.split_size("val") else {}
    test = classify_split(method, net, data, "test", batch)
    per_block = [{"name": b.name, "accuracy": test.get(b.name)} for b in net.blocks]
    result = {"val": val, "test": test}
    ev = config.eval
    if not (ev.probes or ev.knn):
        return result, per_block
    features = split_features(method, net, data, batch, ev.feature_train_size)
    if ev.probes:
        readout = method.readout_blocks(len(net.blocks))
        probes = linear_probes(method, net, data, readout, ev.probe_epochs, ev.probe_lr, config.train.seed, batch, features, ev.feature_train_size,
                               ev.probe_flip, ev.probe_schedule, ev.probe_weight_decay)
        for entry in per_block:
            entry["probe_accuracy"] = probes[entry["name"]]["test"]
            entry["probe_val_accuracy"] = probes[entry["name"]]["val"]
        result["readout"] = probes["readout"]
    if ev.knn:
        labels = split_labels(data, ev.feature_train_size)
        for i, entry in enumerate(per_block):
            entry["knn_accuracy"] = knn_accuracy(features["train"][i], labels["train"], features["test"][i], labels["test"], ev.knn_k, ev.knn_temperature)
    return result, per_block


def train(config: Config, preset: str, out: Path, resume: bool = False, callbacks: list[EpochCallback] = (), command: str | None = None) -> dict | None:
    """Run (or, with `resume`, continue from its last checkpoint) a training run into folder `out`; returns the summary.

    For a resume, `config` is the run's saved config (see `resume_config`). `command` (the
    command line that started the run) goes into the summary, for its result record. Under torchrun
    every rank calls this; rank 0 alone writes the folder, evaluates and returns the summary
    (the other ranks return None). A rank that loses its peers ends with a one-line error.
    """
    ctx, device = init_distributed(config.distributed, config.train.device)
    try:
        summary = _train(config, preset, Path(out), resume, callbacks, ctx, device, command)
        ctx.barrier()  # the other ranks wait for rank 0's evaluation: no rank tears the group down under another
        return summary
    except RuntimeError as err:
        if ctx.world == 1:
            raise
        raise RunError(f"rank {ctx.rank} of {ctx.world}: lost contact with another rank, which probably failed or was killed "
                       f"(see its own message above): {str(err).strip().splitlines()[0][:200]}") from None
    finally:
        close_distributed()


def _train(config: Config, preset: str, out: Path, resume: bool, callbacks, ctx: DistContext, device: torch.device, command: str | None) -> dict | None:
    if not resume and (out / "checkpoint.json").exists():
        raise UsageError(f"{out} already holds a run; continue it with --resume or choose another --out")
    created = ctx.is_main and not out.exists()
    if ctx.is_main:
        prepare_out_dir(out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    c = config
    try:
        data = load_dataset(c.data.name, c.data.dir, c.data.val_size, c.data.train_subset, c.data.normalize, c.data.download,
                            image_size=c.data.image_size, workers=c.data.workers, crop_scale=c.data.crop_scale).to(device)
        trainer = Trainer(config, data, device, ctx)
    except LocalLearnError:
        if created and not any(out.iterdir()):
            out.rmdir()  # a run refused before it began leaves no empty folder behind
        raise
    history: list[dict] = []
    if resume:
        index = load_checkpoint(out, trainer)
        history, ranks = index["history"], index.get("data_parallel_ranks", 1)
        if ranks != data_parallel_ranks(trainer):
            raise UsageError(f"--resume: the run in {out} was trained data-parallel on {ranks} rank(s) and this is "
                             f"{data_parallel_ranks(trainer)}: the global batch would change; resume on {ranks}")
    elif ctx.is_main:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    if ctx.is_main:
        write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    logger = TensorBoardLogger(out) if config.logging.tensorboard and ctx.is_main else None
    with StopOnSignal(trainer) as stopper:
        while trainer.epoch < config.train.epochs:
            _train_one_epoch(trainer, config, preset, out, history, logger, callbacks, stopper)
    if not ctx.is_main:
        return None
    results, per_block = evaluate_final(trainer, config)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"final": results}) + "\n")
    summary = make_summary(config, preset, trainer, history, results, per_block, command)
    write_json_atomic(out / "summary.json", summary)
    return summary


def data_parallel_ranks(trainer: Trainer) -> int:
    """Ranks sharing each batch (1 unless data parallel): a resume must keep it, as it sets the global batch."""
    return trainer.dist.world if trainer.dist.data_parallel else 1


def _train_one_epoch(trainer, config, preset, out, history, logger, callbacks, stopper) -> None:
    """Train an epoch (or the rest of one), validate, checkpoint, log; on a stop signal checkpoint mid-epoch and raise.

    Only the main rank validates and writes; the others go on to the next epoch.
    """
    main = trainer.dist.is_main
    bar = ProgressBar(config.logging.progress and main, trainer.epoch + 1, config.train.epochs, len(trainer.batcher), config.data.batch_size * (trainer.dist.world if trainer.dist.data_parallel else 1))
    record = trainer.train_epoch(progress=bar if main else None)
    bar.close()
    if record is None:
        signum = stopper.received or signal.SIGTERM
        if not main:
            raise Interrupted(signum, f"rank {trainer.dist.rank}: stopped with the others at epoch {trainer.epoch + 1}, step {trainer.partial.step}")
        save_checkpoint(out, trainer, {"preset": preset, "history": history, "data_parallel_ranks": data_parallel_ranks(trainer)})
        how = f"stopped by {signum.name}" if stopper.received else "stopped because another rank was"
        raise Interrupted(signum, f"{how} at epoch {trainer.epoch + 1}, step {trainer.partial.step} of "
                          f"{len(trainer.batcher)}; checkpoint saved, continue with: locallearn train {preset} --out {out} --resume")
    if not main:
        return
    data = trainer.data
    every = config.train.eval_every
    if every and (trainer.epoch % every == 0 or trainer.epoch == config.train.epochs) and data.split_size("val"):
        record["val"] = classify_split(trainer.method, trainer.net, data, "val", config.data.eval_batch_size)
    history.append(record)
    save_checkpoint(out, trainer, {"preset": preset, "history": history, "data_parallel_ranks": data_parallel_ranks(trainer)})
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    if logger:
        logger.log(record)
    if config.logging.progress:
        print(epoch_line(record, trainer.method.primary), file=sys.stderr)
    for callback in callbacks:
        callback(trainer, record)


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


def epoch_line(record: dict, primary: str) -> str:
    losses = " ".join(f"{name}={m['loss']:.4f}" for name, m in record["blocks"].items())
    accuracy = record.get("val", {}).get(primary)
    val = f" val_acc={accuracy:.4f}" if accuracy is not None else ""
    return f"epoch {record['epoch']}: loss {losses}{val} ({record['epoch_seconds']:.1f}s, {record['samples_per_second']:.0f} samples/s)"


def make_summary(config: Config, preset: str, trainer: Trainer, history: list[dict], results: dict, per_block: list[dict], command: str | None = None) -> dict:
    use_readout = trainer.method.uses_readout
    primary = trainer.method.primary
    test_acc = results.get("readout", {}).get("test") if use_readout else results["test"][primary]
    val_acc = results.get("readout", {}).get("val") if use_readout else results["val"].get(primary)
    train_seconds = sum(r["epoch_seconds"] for r in history)
    samples = sum(r["samples_per_second"] * r["epoch_seconds"] for r in history)
    return {
        "preset": preset,
        "method": config.method.name,
        "dataset": config.data.name,
        "granularity": config.train.granularity,
        "epochs": trainer.epoch,
        "test_accuracy": test_acc,
        "val_accuracy": val_acc,
        "classifier": "readout" if use_readout else primary,
        "test_accuracy_by_classifier": results["test"],
        "readout_test_accuracy": results.get("readout", {}).get("test"),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(history), 1),
        "samples_per_second": samples / train_seconds if train_seconds else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": command,
        "code_version": code_version(),
        "machine": machine(),
        "per_block": per_block,
    }


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


def restore_run(out: Path, overrides: list[str] = ()) -> Trainer:
    """The trainer of a saved run, rebuilt from its config (with `KEY=VALUE` overrides) and data and loaded from its last checkpoint.

    Its net is in eval mode (no dropout, BatchNorm on its running statistics), as every look at a trained net needs; a training epoch switches it back.
    """
    out = Path(out)
    if not (out / "config.yaml").is_file():
        raise RunError(f"{out} is not a run folder (no config.yaml)")
    config = validate(apply_overrides(load_yaml((out / "config.yaml").read_text()), overrides))
    device = pick_device(config.train.device)
    c = config
    data = load_dataset(c.data.name, c.data.dir, c.data.val_size, c.data.train_subset, c.data.normalize, c.data.download,
                        image_size=c.data.image_size, workers=c.data.workers, crop_scale=c.data.crop_scale).to(device)
    trainer = Trainer(config, data, device)
    load_checkpoint(out, trainer)
    trainer.net.eval()
    return trainer


def evaluate_run(out: Path, overrides: list[str] = ()) -> dict:
    """Evaluate a saved run again (its last checkpoint) and write `eval.json`.

    `overrides` change how it is evaluated, not what was trained (e.g. which blocks'
    goodness is summed: `method.skip_first=false`); they are recorded in `eval.json`.
    """
    trainer = restore_run(out, overrides)
    results, per_block = evaluate_final(trainer, trainer.config)
    report = {"run": str(out), "epoch": trainer.epoch, "overrides": list(overrides), **results, "per_block": per_block}
    write_json_atomic(Path(out) / "eval.json", report)
    return report
