"""Faults: a run stopped mid-epoch (signal or kill) resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from helpers import stop_and_resume, tiny_config, tiny_dataset_folder, tiny_splits, without_times
from locallearn.checkpoint import load_checkpoint, save_checkpoint
from locallearn.engine import Trainer




@pytest.mark.parametrize("preset, overrides", [("ff-bench", ["method.negatives=hard", "model.dropout=0.3", "model.input_dropout=0.1"]), ("backprop-mlp", ["train.granularity=layer"])])
def test_stop_inside_an_epoch_and_resume_is_exact(tmp_path, preset, overrides):
    data = tiny_splits(tmp_path)
    config = tiny_config(preset, tmp_path, "optim.schedule=linear-decay", *overrides)
    reference = Trainer(config, data)
    expected = [without_times(reference.train_epoch()) for _ in range(2)]

    first = Trainer(config, data)
    records = [first.train_epoch()]
    resumed = stop_and_resume(first, config, data, tmp_path, steps=3)
    assert first.epoch == 1
    records.append(resumed.train_epoch())
    assert [without_times(r) for r in records] == expected
    for mine, theirs in zip(resumed.net.state_dict().values(), reference.net.state_dict().values()):
        assert torch.equal(mine, theirs)


def test_sigterm_checkpoints_mid_run_and_resume_matches(tmp_path):
    """A real process gets SIGTERM while training: it exits 143 with a checkpoint, and --resume finishes exactly."""
    data_dir = tiny_dataset_folder(tmp_path)
    args = ["ff-bench", "--data-dir", str(data_dir), "data.name=mnist", "data.val_size=100", "data.download=false",
            "data.batch_size=10", "model.hidden=[128,128]", "train.epochs=12", "train.threads=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "locallearn", "train"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    subprocess.run([*cli, *args, "--out", str(whole), "--quiet"], check=True, env=env, capture_output=True)

    proc = subprocess.Popen([*cli, *args, "--out", str(parts)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (parts / "checkpoint.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM at epoch" in err and "--resume" in err
    assert not (parts / "summary.json").exists()
    resumed = subprocess.run([*cli, *args[:1], "--out", str(parts), "--resume", "--quiet"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    a, b = load_file(whole / "checkpoint-0012.safetensors"), load_file(parts / "checkpoint-0012.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    read = lambda folder: [without_times(json.loads(l)) for l in (folder / "metrics.jsonl").read_text().splitlines()]
    assert read(whole) == read(parts)


def test_checkpoint_of_another_architecture_or_corrupt_weights_is_refused(tmp_path):
    from locallearn.errors import RunError

    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path), data)
    trainer.train_epoch()
    save_checkpoint(tmp_path, trainer, {})
    with pytest.raises(RunError, match="another architecture"):
        load_checkpoint(tmp_path, Trainer(tiny_config("ff-bench", tmp_path, "model.hidden=[64,32,64]"), data))
    weights = next(tmp_path.glob("checkpoint-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RunError, match="do not match their recorded SHA-256"):
        load_checkpoint(tmp_path, Trainer(tiny_config("ff-bench", tmp_path), data))


def test_tensorboard_logging_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from locallearn.cli import main

    data_dir = tiny_dataset_folder(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "ff-bench", "--out", str(out), "--data-dir", str(data_dir), "--quiet", "data.name=mnist", "data.val_size=100",
                 "data.download=false", "model.hidden=[16]", "logging.tensorboard=true"]) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
