"""Data-parallel and pipeline training across processes (gloo on the CPU) and devices.

Each multi-process test launches real ranks: `torchrun` for the documented command, or
the ranks by hand (the environment torchrun sets) where a test must kill one of them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from helpers import tiny_config, tiny_dataset_folder, tiny_splits
from locallearn import run
from locallearn.distributed.context import DistContext
from locallearn.distributed.links import stage_bounds
from locallearn.engine import Trainer
from locallearn.nn.noise import Dropout

COMMON = ["data.name=mnist", "data.val_size=100", "data.download=false", "data.eval_batch_size=200",
          "model.hidden=[64,64,64,64]", "train.epochs=2", "eval.probes=false", "eval.knn=false", "logging.progress=false"]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    index = json.loads((out / "checkpoint.json").read_text())
    return {k: v for k, v in load_file(out / index["weights"]).items() if k.startswith("net.")}


def torchrun(nproc: int, preset: str, out: Path, *overrides: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "locallearn", "train", preset, "--out", str(out), *COMMON, *overrides]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def train_here(preset: str, out: Path, folder: Path, *overrides: str) -> None:
    torch.set_num_threads(1)
    run.train(tiny_config(preset, folder, *COMMON[4:], *overrides), preset, out)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_dataset_folder(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("granularity, overlap", [("layer", False), ("end-to-end", False), ("layer", True)])
def test_data_parallel_equals_one_process_with_the_global_batch(tmp_path, folder, granularity, overlap):
    """2 ranks x batch 25 train the same weights as 1 process x batch 50 (per-block gradients averaged), LoCo's overlap included."""
    overrides = [f"data.dir={folder}", f"train.granularity={granularity}", f"train.overlap={str(overlap).lower()}", "optim.lr=0.003"]
    done = torchrun(2, "backprop-mlp", tmp_path / "dp", *overrides, "data.batch_size=25")
    assert done.returncode == 0, done.stderr[-2000:]
    train_here("backprop-mlp", tmp_path / "one", folder, *overrides, "data.batch_size=50")
    dp, one = final_weights(tmp_path / "dp"), final_weights(tmp_path / "one")
    assert dp.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(dp[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(v, w) for v, w in zip(one.values(), final_weights_untrained(folder, overrides).values()))
    summary = json.loads((tmp_path / "dp" / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.5


def final_weights_untrained(folder: Path, overrides: list[str]) -> dict[str, torch.Tensor]:
    trainer = Trainer(tiny_config("backprop-mlp", folder, *COMMON[4:], *overrides), tiny_splits(folder.parent))
    return {f"net.{k}": v for k, v in trainer.net.state_dict().items()}


def test_pipeline_equals_sequential_local_training(tmp_path, folder):
    """FF with block i on rank i (2 ranks, 2 blocks each) gives the very weights of one process training block after block."""
    overrides = [f"data.dir={folder}", "data.batch_size=50"]
    done = torchrun(2, "ff-supervised-small", tmp_path / "pipe", *overrides, "distributed.mode=pipeline")
    assert done.returncode == 0, done.stderr[-2000:]
    train_here("ff-supervised-small", tmp_path / "one", folder, *overrides)
    pipe, one = final_weights(tmp_path / "pipe"), final_weights(tmp_path / "one")
    for name in one:
        assert torch.equal(pipe[name], one[name]), name
    summary = json.loads((tmp_path / "pipe" / "summary.json").read_text())
    local = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["test_accuracy"] == local["test_accuracy"]
    assert list(json.loads(line)["blocks"] for line in (tmp_path / "pipe" / "metrics.jsonl").read_text().splitlines()[:1])[0].keys() == {
        "layer1", "layer2", "layer3", "layer4"}


def test_pipeline_over_devices_in_one_process_equals_sequential(tmp_path, folder):
    data = tiny_splits(tmp_path)
    base = [f"data.dir={folder}", *COMMON[4:]]
    one = Trainer(tiny_config("ff-supervised-small", folder, *base), data)
    spread = Trainer(tiny_config("ff-supervised-small", folder, *base, "distributed.devices=[cpu,cpu]"), data)
    for trainer in (one, spread):
        trainer.train_epoch()
    for (name, a), b in zip(one.net.state_dict().items(), spread.net.state_dict().values()):
        assert torch.equal(a, b), name


def test_data_parallel_ranks_drop_different_units_from_the_same_stream(tmp_path, folder):
    """Every rank holds the same noise buffers (DDP broadcasts rank 0's), so each mixes in its rank:
    rank 1 drops other units than one process does, while rank 0 drops the same ones."""
    config = tiny_config("ff-bench", folder, *COMMON[4:], "model.dropout=0.5")
    data = tiny_splits(folder.parent)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ranks = [Trainer(config, data, dist=DistContext(rank, 2, "data")) for rank in (0, 1)]
    finally:
        dist.destroy_process_group()
    alone = Trainer(config, data)
    x = torch.ones(8, 784)
    masks = [[m(x) for m in t.net.modules() if isinstance(m, Dropout)] for t in (alone, *ranks)]
    assert len(masks[0]) == 3  # before layers 2-4
    for one, rank0, rank1 in zip(*masks):
        assert torch.equal(rank0, one)
        assert not torch.equal(rank1, one)


def test_stage_bounds_split_blocks_evenly():
    assert stage_bounds(4, 2) == [(0, 2), (2, 4)]
    assert stage_bounds(5, 3) == [(0, 2), (2, 3), (3, 5)]
    with pytest.raises(ValueError):
        stage_bounds(2, 3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["data", "pipeline"])
def test_killing_one_rank_ends_the_others_with_a_clear_error(tmp_path, folder, mode):
    port = free_port()
    ranks = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        command = [sys.executable, "-m", "locallearn", "train", "ff-supervised-small", "--out", str(tmp_path / "run"), *COMMON,
                   f"data.dir={folder}", "data.batch_size=10", "train.epochs=1000", f"distributed.mode={mode}"]
        ranks.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    deadline = time.time() + 120
    while not (tmp_path / "run" / "checkpoint.json").exists():  # both ranks are training
        assert time.time() < deadline and ranks[0].poll() is None, ranks[0].stderr.read() if ranks[0].poll() is not None else "no epoch within 120 s"
        time.sleep(0.2)
    ranks[1].send_signal(signal.SIGKILL)
    try:
        _, err = ranks[0].communicate(timeout=60)
    except subprocess.TimeoutExpired:
        ranks[0].kill()
        pytest.fail("rank 0 hung after rank 1 was killed")
    assert ranks[0].returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "lost contact with another rank" in lines[0], err


def test_data_parallel_resume_continues_exactly(tmp_path, folder):
    """A 2-rank run of 1 epoch extended to 2 on 2 ranks ends where one process with the global batch ends (constant lr:
    extending a run keeps the schedule it was started with)."""
    overrides = [f"data.dir={folder}", "optim.lr=0.003", "optim.schedule=constant", "data.batch_size=25"]
    first = torchrun(2, "backprop-mlp", tmp_path / "dp", *overrides, "train.epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "locallearn",
                              "train", "backprop-mlp", "--out", str(tmp_path / "dp"), "--resume", "train.epochs=2", "logging.progress=false"],
                             env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    train_here("backprop-mlp", tmp_path / "one", folder, f"data.dir={folder}", "optim.lr=0.003", "optim.schedule=constant", "data.batch_size=50")
    dp, one = final_weights(tmp_path / "dp"), final_weights(tmp_path / "one")
    for name in one:
        torch.testing.assert_close(dp[name], one[name], rtol=1e-4, atol=1e-5, msg=name)


def launch_ranks(out: Path, folder: Path, *overrides: str, resume: bool = False) -> list[subprocess.Popen]:
    port = free_port()
    ranks = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
        env.pop("PYTHONUNBUFFERED", None)  # buffered output, as a launcher other than torchrun (`python -u`) gives
        args = ["--resume", "logging.progress=false"] if resume else [*COMMON, f"data.dir={folder}", *overrides]
        command = [sys.executable, "-m", "locallearn", "train", "ff-supervised-small", "--out", str(out), *args]
        ranks.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return ranks


@pytest.mark.parametrize("mode", ["data", "pipeline"])
def test_sigterm_to_all_ranks_checkpoints_mid_epoch_and_resume_is_exact(tmp_path, folder, mode):
    overrides = ["data.batch_size=5", "train.epochs=3", f"distributed.mode={mode}"]
    ranks = launch_ranks(tmp_path / "stopped", folder, *overrides)
    deadline = time.time() + 120
    while not (tmp_path / "stopped" / "checkpoint.json").exists():
        assert time.time() < deadline and ranks[0].poll() is None, "no epoch within 120 s"
        time.sleep(0.05)
    for rank in ranks:
        rank.send_signal(signal.SIGTERM)
    errors = [rank.communicate(timeout=60)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [128 + signal.SIGTERM] * 2, errors
    index = json.loads((tmp_path / "stopped" / "checkpoint.json").read_text())
    assert index["partial"] is not None, "the ranks should have stopped inside epoch 2"
    resumed = launch_ranks(tmp_path / "stopped", folder, resume=True)
    errors = [rank.communicate(timeout=180)[1] for rank in resumed]
    assert [rank.returncode for rank in resumed] == [0, 0], errors
    whole = launch_ranks(tmp_path / "whole", folder, *overrides)
    outputs = [rank.communicate(timeout=180) for rank in whole]
    assert [rank.returncode for rank in whole] == [0, 0], [err for _, err in outputs]
    assert f"run={tmp_path / 'whole'}" in outputs[0][0]  # rank 0's last line, flushed before its os._exit
    stopped, uninterrupted = final_weights(tmp_path / "stopped"), final_weights(tmp_path / "whole")
    for name in uninterrupted:
        assert torch.equal(stopped[name], uninterrupted[name]), name


def test_resuming_a_data_parallel_run_on_another_number_of_ranks_is_refused(tmp_path, folder, capsys):
    done = torchrun(2, "backprop-mlp", tmp_path / "dp", f"data.dir={folder}", "data.batch_size=25", "train.epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    from locallearn.cli import main

    assert main(["train", "backprop-mlp", "--out", str(tmp_path / "dp"), "--resume", "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trained data-parallel on 2 rank(s)" in err[0]
