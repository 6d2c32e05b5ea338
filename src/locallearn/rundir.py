"""The run folder and resuming it: creating the folder, the config a resume may change, and
whether a run is already finished.
"""

from __future__ import annotations

import json
from pathlib import Path

from locallearn.checkpoint import read_index
from locallearn.config import Config, apply_overrides, load_yaml, validate
from locallearn.errors import RunError, UsageError


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
    """The dotted keys whose values differ between two config trees."""
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
        raise UsageError(f"no run to resume in {out} (config.yaml is missing); start it without --resume")
    saved_preset = read_index(out).get("preset")
    if saved_preset != preset:
        raise UsageError(f"--resume: the run in {out} was made from preset {saved_preset!r}, not {preset!r}")
    tree = load_yaml(saved_path.read_text())
    saved, requested = validate(tree), validate(apply_overrides(tree, overrides))
    diffs = [d for d in config_differences(saved.to_dict(), requested.to_dict()) if d not in RESUMABLE_CHANGES]
    if diffs:
        raise UsageError(f"--resume: the run in {out} was made with other settings ({', '.join(diffs)}); drop those overrides or use a new --out")
    return requested


def finished_summary(out: Path, epochs: int) -> dict | None:
    """The summary of the run in `out` if it has one and reached `epochs` (nothing left to train), else None."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) and summary.get("epochs", 0) >= epochs else None


def data_parallel_ranks(trainer) -> int:
    """Ranks sharing each batch (1 unless data parallel): a resume must keep it, as it sets the global batch."""
    return trainer.dist.world if trainer.dist.data_parallel else 1


def check_resumable(out: Path, index: dict, trainer) -> None:
    """Refuse to resume a data-parallel run on another number of ranks (the global batch would change)."""
    ranks = index.get("data_parallel_ranks", 1)
    if ranks != data_parallel_ranks(trainer):
        raise UsageError(f"--resume: the run in {out} was trained data-parallel on {ranks} rank(s) and this is "
                         f"{data_parallel_ranks(trainer)}: the global batch would change; resume on {ranks}")
