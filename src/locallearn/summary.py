"""A finished run's `summary.json`: its accuracies, timings and machine, numbers written consistently.

Accuracies are fractions rounded to ACCURACY_DECIMALS, times, rates and sizes to MEASURE_DECIMALS, so
the file shows `0.8749`, not float32 noise such as `0.8748999834060669`.
"""

from __future__ import annotations

import resource

import torch

from locallearn.config import Config
from locallearn.engine import Trainer
from locallearn.records import code_version, machine

ACCURACY_DECIMALS = 6
MEASURE_DECIMALS = 3  # seconds, samples per second, megabytes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rounded(value, decimals: int):
    """`value` with every float in it (in nested dicts and lists too) rounded to `decimals`; None stays None."""
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, dict):
        return {k: rounded(v, decimals) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, decimals) for v in value]
    return value


def make_summary(config: Config, preset: str, trainer: Trainer, history: list[dict], results: dict, per_block: list[dict], command: str | None = None,
                 version: dict | None = None) -> dict:
    """The summary of a run from its epoch `history` and final evaluation (`evaluate_final`'s results and per-block numbers);
    `version` is the code version the run started from (default: the code checked out now)."""
    use_readout = trainer.method.uses_readout
    primary = trainer.method.primary
    test_acc = results.get("readout", {}).get("test") if use_readout else results["test"][primary]
    val_acc = results.get("readout", {}).get("val") if use_readout else results["val"].get(primary)
    train_seconds = sum(r["epoch_seconds"] for r in history)
    samples = sum(r["samples_per_second"] * r["epoch_seconds"] for r in history)
    accuracy = lambda value: rounded(value, ACCURACY_DECIMALS)
    measure = lambda value: rounded(value, MEASURE_DECIMALS)
    return {
        "preset": preset,
        "method": config.method.name,
        "dataset": config.data.name,
        "granularity": config.train.granularity,
        "epochs": trainer.epoch,
        "test_accuracy": accuracy(test_acc),
        "val_accuracy": accuracy(val_acc),
        "classifier": "readout" if use_readout else primary,
        "test_accuracy_by_classifier": accuracy(results["test"]),
        "readout_test_accuracy": accuracy(results.get("readout", {}).get("test")),
        "train_seconds": measure(train_seconds),
        "seconds_per_epoch": measure(train_seconds / max(len(history), 1)),
        "samples_per_second": measure(samples / train_seconds if train_seconds else 0.0),
        "peak_rss_mb": measure(peak_rss_mb()),
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": command,
        "code_version": version or code_version(),
        "machine": machine(),
        "per_block": accuracy(per_block),
    }
