"""Checkpoints: weights and optimizer tensors in safetensors, everything else in JSON.

Writing is crash-safe: the weights go to a new file `checkpoint-EPOCH.safetensors`
(written atomically), then `checkpoint.json` (atomically) names that file and its
SHA-256, and only then are older weight files removed. A run killed at any moment
therefore leaves a `checkpoint.json` that points at a complete weights file. Loading
never unpickles anything, and refuses a checkpoint of another architecture.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from locallearn.atomic import write_atomic, write_json_atomic
from locallearn.engine import EpochProgress
from locallearn.errors import RunError

INDEX = "checkpoint.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_optimizer(prefix: str, state_dict: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """Move the tensors of an optimizer state dict into `tensors`; return the JSON-able rest."""
    rest: dict[str, Any] = {"param_groups": state_dict["param_groups"], "state": {}}
    for param_id, entries in state_dict["state"].items():
        rest["state"][str(param_id)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{param_id}.{name}"] = value.detach().cpu().contiguous()
                rest["state"][str(param_id)][name] = {"tensor": f"{prefix}.{param_id}.{name}"}
            else:
                rest["state"][str(param_id)][name] = value
    return rest


def _join_optimizer(rest: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {
        int(param_id): {name: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v for name, v in entries.items()}
        for param_id, entries in rest["state"].items()
    }
    return {"param_groups": rest["param_groups"], "state": state}


def architecture(trainer) -> dict[str, list[int]]:
    """Parameter and buffer names with their shapes: what a checkpoint must match to be loaded."""
    return {name: list(t.shape) for name, t in trainer.net.state_dict().items()}


def save_checkpoint(folder: Path, trainer, extra: dict[str, Any]) -> Path:
    """Save the trainer's full state (after `trainer.epoch` epochs and, if stopped inside one, `trainer.partial`), plus JSON-able `extra`."""
    folder = Path(folder)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in trainer.net.state_dict().items()}
    tensors.update({f"method.{k}": v.detach().cpu().contiguous() for k, v in trainer.method.state().items()})
    optimizers = [_split_optimizer(f"optim.{i}", opt.state_dict(), tensors) for i, opt in enumerate(trainer.optimizers)]
    partial = trainer.partial
    name = f"checkpoint-{trainer.epoch:04d}"
    if partial is not None:
        name += f"-step{partial.step:06d}"
    weights = folder / f"{name}.safetensors"
    write_atomic(weights, lambda tmp: save_file(tensors, tmp))
    index = {
        "epoch": trainer.epoch,
        "weights": weights.name,
        "sha256": _sha256(weights),
        "architecture": architecture(trainer),
        "optimizers": optimizers,
        "schedules": [s.state_dict() for s in trainer.schedules],
        "partial": None if partial is None else {
            "step": partial.step, "seconds": partial.seconds, "sums": [{k: float(v) for k, v in s.items()} for s in partial.sums]
        },
        **extra,
    }
    write_json_atomic(folder / INDEX, index)
    for old in folder.glob("checkpoint-*.safetensors"):
        if old.name != weights.name:
            old.unlink()
    return weights


def read_index(folder: Path) -> dict[str, Any]:
    path = Path(folder) / INDEX
    if not path.is_file():
        raise RunError(f"no checkpoint in {folder} (no {INDEX}); nothing to resume or evaluate")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path} is corrupt (not valid JSON)") from None


def load_checkpoint(folder: Path, trainer) -> dict[str, Any]:
    """Restore the trainer from the checkpoint in `folder`; returns the checkpoint's index (with `extra`)."""
    folder = Path(folder)
    index = read_index(folder)
    if index.get("architecture") != architecture(trainer):
        raise RunError(f"the checkpoint in {folder} is for another architecture or config; it cannot be loaded into this model")
    weights = folder / index["weights"]
    if not weights.is_file() or _sha256(weights) != index["sha256"]:
        raise RunError(f"checkpoint weights {weights} are missing or do not match their recorded SHA-256")
    tensors = load_file(weights, device="cpu")
    trainer.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    trainer.method.load_state({k[7:]: v.to(trainer.device) for k, v in tensors.items() if k.startswith("method.")})
    for opt, rest in zip(trainer.optimizers, index["optimizers"]):
        opt.load_state_dict(_join_optimizer(rest, tensors))
    for schedule, state in zip(trainer.schedules, index["schedules"]):
        schedule.load_state_dict(state)
    trainer.epoch = index["epoch"]
    partial = index.get("partial")
    trainer.partial = None if partial is None else EpochProgress(
        sums=[{k: torch.tensor(v) for k, v in s.items()} for s in partial["sums"]],
        step=partial["step"],
        seconds=partial["seconds"],
    )
    return index
