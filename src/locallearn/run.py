"""A training run into its folder: config.yaml, metrics.jsonl, checkpoints, summary.json.

This is where the engine meets the file system. `train` loads the data, runs the epoch
loop (`locallearn.loop`), measures the test set once (`evaluate.evaluate_final`) and
writes the summary (`locallearn.summary`); `restore_run` and `evaluate_run` look again at
a saved run. The folder and resume rules are in `locallearn.rundir`, what the user sees
while it runs in `locallearn.monitor`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from locallearn.atomic import write_json_atomic, write_text_atomic
from locallearn.checkpoint import load_checkpoint
from locallearn.config import Config, apply_overrides, load_yaml, validate
from locallearn.data import load_dataset
from locallearn.distributed.context import DistContext, close_distributed, init_distributed, pick_device
from locallearn.engine import Trainer
from locallearn.errors import LocalLearnError, RunError, UsageError
from locallearn.evaluate import evaluate_final, readout_sweep
from locallearn.loop import EpochCallback, train_epochs
from locallearn.monitor import PhaseProgress, status
from locallearn.rundir import check_resumable, prepare_out_dir
from locallearn.records import code_version
from locallearn.summary import make_summary


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
    version = code_version()  # the code this (part of the) run starts from, not whatever is checked out when it ends
    try:
        status(config.logging.progress and ctx.is_main, f"loading {config.data.name}…")
        data = load_data(config, device)
        status(config.logging.progress and ctx.is_main, f"building the network and the {config.method.name} method…")
        trainer = Trainer(config, data, device, ctx)
    except LocalLearnError:
        if created and not any(out.iterdir()):
            out.rmdir()  # a run refused before it began leaves no empty folder behind
        raise
    history: list[dict] = []
    if resume:
        index = load_checkpoint(out, trainer)
        check_resumable(out, index, trainer)
        history = index["history"]
    elif ctx.is_main:
        write_text_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    if ctx.is_main:
        write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    train_epochs(trainer, config, preset, out, history, callbacks)
    if not ctx.is_main:
        return None
    results, per_block = evaluate_with_progress(trainer, config, "final evaluation", config.logging.progress)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"final": results}) + "\n")
    summary = make_summary(config, preset, trainer, history, results, per_block, command, version)
    write_json_atomic(out / "summary.json", summary)
    return summary


def restore_run(out: Path, overrides: list[str] = (), progress: bool = False) -> Trainer:
    """The trainer of a saved run, rebuilt from its config (with `KEY=VALUE` overrides) and data and loaded from its last checkpoint.

    Its net is in eval mode (no dropout, BatchNorm on its running statistics), as every look at a trained net needs; a training epoch switches it back.
    `progress` says on stderr what it is loading.
    """
    out = Path(out)
    if not (out / "config.yaml").is_file():
        raise UsageError(f"{out} is not a run folder (no config.yaml); give the --out folder of a run")
    config = validate(apply_overrides(load_yaml((out / "config.yaml").read_text()), overrides))
    device = pick_device(config.train.device)
    status(progress, f"loading the run in {out}: its data, network and last checkpoint…")
    trainer = Trainer(config, load_data(config, device), device)
    load_checkpoint(out, trainer)
    trainer.net.eval()
    return trainer


def evaluate_run(out: Path, overrides: list[str] = (), progress: bool = True) -> dict:
    """Evaluate a saved run again (its last checkpoint) and write `eval.json`.

    `overrides` change how it is evaluated, not what was trained (e.g. which blocks'
    goodness is summed: `method.skip_first=false`); they are recorded in `eval.json`.
    `progress` shows the evaluation's phases on stderr. It runs on the run's `train.threads`, as training did.
    """
    trainer = restore_run(out, overrides, progress)
    if trainer.config.train.threads:
        torch.set_num_threads(trainer.config.train.threads)
    results, per_block = evaluate_with_progress(trainer, trainer.config, "evaluation", progress)
    report = {"run": str(out), "epoch": trainer.epoch, "overrides": list(overrides), **results, "per_block": per_block}
    write_json_atomic(Path(out) / "eval.json", report)
    return report


def sweep_run_readout(out: Path, settings: list[dict], overrides: list[str] = (), progress: bool = True) -> dict:
    """Fit a saved run's readout again at each of `settings` (see `evaluate.readout_sweep`) and write `readout-sweep.json`."""
    trainer = restore_run(out, overrides, progress)
    if trainer.config.train.threads:
        torch.set_num_threads(trainer.config.train.threads)
    shown = PhaseProgress(progress, "readout sweep")
    try:
        rows = readout_sweep(trainer, trainer.config, settings, shown)
    finally:
        shown.close()
    report = {"run": str(out), "epoch": trainer.epoch, "overrides": list(overrides), "readout_sweep": rows}
    write_json_atomic(Path(out) / "readout-sweep.json", report)
    return report


def load_data(config: Config, device: torch.device):
    """The dataset `config.data` names, on `device`."""
    d = config.data
    return load_dataset(d.name, d.dir, d.val_size, d.train_subset, d.normalize, d.download,
                        image_size=d.image_size, workers=d.workers, crop_scale=d.crop_scale).to(device)


def evaluate_with_progress(trainer: Trainer, config: Config, title: str, show: bool) -> tuple[dict, list[dict]]:
    """`evaluate_final`, its phases shown under `title` when `show`."""
    progress = PhaseProgress(show, title)
    try:
        return evaluate_final(trainer, config, progress)
    finally:
        progress.close()
