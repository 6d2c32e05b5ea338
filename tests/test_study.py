"""`locallearn study`: bad study files are one-line usage errors; cells run once, resume after a SIGKILL, fail alone; one report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import TINY
from locallearn.cli import main
from locallearn.config import load_yaml
from locallearn.study import claim, load_study

SRC = str(Path(__file__).resolve().parents[1] / "src")
TIMINGS = ("train_seconds", "seconds_per_epoch", "samples_per_second", "peak_rss_mb", "command", "epoch_seconds")


def write_study(folder: Path, data_dir: Path, **spec) -> Path:
    """A study of the tiny ff-supervised-small on the synthetic data; `spec` adds or replaces study-file keys."""
    common = {k: load_yaml(v) for k, v in (item.split("=", 1) for item in TINY)}
    common |= {"data.dir": str(data_dir), "train.epochs": 2, "train.threads": 1, "eval.probes": False, "eval.knn": False}
    study = {"name": "tiny", "preset": "ff-supervised-small", "overrides": common, "grid": {"train.granularity": ["end-to-end", "layer"]}}
    study.update(spec)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def attempts(log: Path) -> int:
    return sum(line.startswith("== ") for line in log.read_text().splitlines())


@pytest.mark.parametrize("change, message", [
    ({"gird": {}}, "unknown key 'gird' in the study file; valid keys: name, description, preset"),
    ({"grid": {"train.epoch": [1, 2]}}, "cell epoch-1_seed-0: unknown key 'train.epoch' (did you mean 'epochs'?)"),
    ({"grid": {"train.epochs": ["two"]}}, "invalid value for 'train.epochs'"),
    ({"grid": {}}, "the grid is empty"),
    ({"grid": {"train.epochs": []}}, "grid key 'train.epochs' needs a non-empty list"),
    ({"variants": {"a": {"preset": "no-such-preset"}}}, "unknown preset 'no-such-preset'"),
    ({"seeds": [0, "1"]}, "'seeds' must be a non-empty list of integers"),
])
def test_a_bad_study_file_is_a_one_line_usage_error_before_anything_runs(tmp_path, data_dir, capsys, change, message):
    path = write_study(tmp_path, data_dir, **change)
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("locallearn: error: ")
    assert not (tmp_path / "out").exists()


def test_cells_are_the_grid_times_variants_times_seeds_each_an_ordinary_train_command(tmp_path, data_dir):
    study = load_study(write_study(tmp_path, data_dir, variants={"ff": {}, "bp": {"preset": "backprop-mlp"}}, seeds=[0, 1]))
    assert [c.name for c in study.cells][:4] == ["ff_granularity-end-to-end_seed-0", "ff_granularity-end-to-end_seed-1",
                                                 "ff_granularity-layer_seed-0", "ff_granularity-layer_seed-1"]
    assert len(study.cells) == 8 and study.cells[-1].preset == "backprop-mlp"
    command = study.cells[2].command(Path("runs/tiny"))
    assert command.startswith("locallearn train ff-supervised-small --out runs/tiny/ff_granularity-layer_seed-0 --quiet ")
    assert command.endswith("'train.granularity=\"layer\"' train.seed=0")


def test_two_study_processes_share_the_cells_run_each_once_and_a_second_run_runs_nothing(tmp_path, data_dir, capsys):
    path, out = write_study(tmp_path, data_dir), tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "locallearn", "study", str(path), "--out", str(out)], env={**os.environ, "PYTHONPATH": SRC},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    logs = sorted(out.glob("*.log"))
    assert len(logs) == 2 and all(attempts(log) == 1 for log in logs)  # no cell was run by both
    assert "done" in procs[0].stderr.read() and not list(out.glob("*.lock"))
    records = sorted((out / "records").glob("*.json"))
    assert [r.stem for r in records] == ["granularity-end-to-end_seed-0", "granularity-layer_seed-0"]
    record = json.loads(records[1].read_text())
    assert record["command"] == load_study(path).cells[1].command(out) and record["config"]["train"]["granularity"] == "layer"
    assert record["summary"]["test_accuracy"] > 0.5  # two FF layers learn the tiny data
    report = (out / "records" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ff-supervised-small |")]
    assert [row.split(" | ")[1:4] for row in rows] == [["1", "end-to-end", "1"], ["2", "layer", "1"]]
    assert all((out / "records" / f"{n}.png").stat().st_size > 1000 for n in ("accuracy", "memory", "time"))

    summaries = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    assert main(["study", str(path), "--out", str(out), "--workers", "2", "--records", str(tmp_path / "published")]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == summaries and all(attempts(log) == 1 for log in logs)
    assert "2/2 done, 0 running, 0 failed" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "published").glob("*.json")) == [r.name for r in records]  # published: a deliberate copy
    assert main(["study", str(path), "--out", str(out), "--report", "--records", str(tmp_path / "again")]) == 0  # runs nothing
    assert sorted(p.name for p in (tmp_path / "again").glob("*.json")) == [r.name for r in records] and (tmp_path / "again" / "report.html").is_file()


def test_a_failing_cell_is_reported_and_the_others_go_on(tmp_path, data_dir, capsys):
    path, out = write_study(tmp_path, data_dir, grid={"train.granularity": ["block:5", "layer"]}), tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cell granularity-block-5_seed-0 failed: train.granularity=block:5 asks for more blocks" in err
    assert (out / "granularity-block-5_seed-0.failed").is_file() and not (out / "records" / "granularity-block-5_seed-0.json").exists()
    assert (out / "records" / "granularity-layer_seed-0.json").is_file() and not list(out.glob("*.lock"))


def test_a_lock_of_a_dead_process_is_taken_over_and_a_live_one_is_not(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "cell.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "nonce": "a"}))
    assert claim(lock) and json.loads(lock.read_text())["pid"] == os.getpid()
    assert not claim(lock)  # held by this live process
    lock.write_text("")  # being written just now by another worker
    assert not claim(lock)


def test_a_study_killed_mid_cell_completes_on_the_next_run_with_the_numbers_of_an_uninterrupted_one(tmp_path, data_dir):
    path = write_study(tmp_path, data_dir, grid={"train.granularity": ["layer"]}, overrides={
        **yaml.safe_load(write_study(tmp_path, data_dir).read_text())["overrides"], "train.epochs": 12})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert main(["study", str(path), "--out", str(whole)]) == 0
    cell = parts / "granularity-layer_seed-0"
    study = subprocess.Popen([sys.executable, "-m", "locallearn", "study", str(path), "--out", str(parts)], env={**os.environ, "PYTHONPATH": SRC},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (cell / "checkpoint.json").is_file() or json.loads((cell / "checkpoint.json").read_text())["epoch"] < 2:
        assert time.monotonic() < deadline and study.poll() is None
        time.sleep(0.02)
    os.killpg(study.pid, signal.SIGKILL)  # the study and the process training its cell, at once
    study.wait()
    assert not (cell / "summary.json").exists() and (parts / "granularity-layer_seed-0.lock").exists()  # killed mid-cell, its lock left stale
    assert main(["study", str(path), "--out", str(parts)]) == 0
    assert attempts(parts / "granularity-layer_seed-0.log") == 2 and "--resume" in (parts / "granularity-layer_seed-0.log").read_text()

    def numbers(out: Path) -> tuple[dict, list[dict]]:
        summary = json.loads((out / "records" / "granularity-layer_seed-0.json").read_text())["summary"]
        metrics = [json.loads(line) for line in (out / "granularity-layer_seed-0" / "metrics.jsonl").read_text().splitlines()]
        drop = lambda d: {k: v for k, v in d.items() if k not in TIMINGS}
        return drop(summary), [drop(m) for m in metrics]

    assert numbers(parts) == numbers(whole)


def test_a_study_stopped_by_sigterm_checkpoints_its_cell_and_reports_no_failure(tmp_path, data_dir):
    path = write_study(tmp_path, data_dir, grid={"train.granularity": ["layer"]}, overrides={
        **yaml.safe_load(write_study(tmp_path, data_dir).read_text())["overrides"], "train.epochs": 500})  # far from done when stopped
    out, cell = tmp_path / "out", tmp_path / "out" / "granularity-layer_seed-0"
    study = subprocess.Popen([sys.executable, "-m", "locallearn", "study", str(path), "--out", str(out)], env={**os.environ, "PYTHONPATH": SRC},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (cell / "checkpoint.json").is_file():
        assert time.monotonic() < deadline and study.poll() is None
        time.sleep(0.02)
    study.send_signal(signal.SIGTERM)  # the study alone: it asks its cell to checkpoint and stop
    stderr = study.communicate(timeout=60)[1]
    assert study.returncode == 130 and "interrupted" in stderr and "seed-0 failed" not in stderr, stderr
    assert not (out / "granularity-layer_seed-0.failed").exists() and not (cell / "summary.json").exists()
    assert "stopped by SIGTERM" in (out / "granularity-layer_seed-0.log").read_text()  # the cell checkpointed; the next run resumes it


def test_submitit_local_executor_runs_the_cells(tmp_path, data_dir):
    pytest.importorskip("submitit")
    path, out = write_study(tmp_path, data_dir, executor_parameters={"cluster": "local", "timeout_min": 5}), tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--executor", "submitit"]) == 0
    assert len(list((out / "records").glob("*.json"))) == 2


def test_the_report_averages_seeds_per_objective_and_k_from_the_records(tmp_path, data_dir):
    from locallearn.records import write_record
    from locallearn.study_report import write_study_report

    study = load_study(write_study(tmp_path, data_dir, variants={"heads": {}, "vicreg": {"preset": "backprop-mlp"}}, seeds=[0, 1]))
    accuracy = {("heads", 1): [0.90, 0.92], ("heads", 2): [0.86, 0.88], ("vicreg", 1): [0.80, 0.80]}  # vicreg at K=2: not run yet
    for cell in study.cells:
        k = 1 if cell.point["train.granularity"] == "end-to-end" else 2
        if (cell.variant, k) in accuracy:
            summary = {"test_accuracy": accuracy[cell.variant, k][cell.seed], "val_accuracy": 0.5, "granularity": cell.point["train.granularity"],
                       "seconds_per_epoch": 10.0 * k, "peak_rss_mb": 300.0 + cell.seed, "per_block": [{"name": f"block{i}"} for i in range(k)]}
            write_record(tmp_path / "records" / f"{cell.name}.json", {"record_version": 1, "name": cell.name, "source": "run", "command": "x",
                                                                       "code_version": {}, "machine": {}, "config": {}, "summary": summary, "note": ""})
    report = write_study_report(study, tmp_path / "records").read_text()
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith(("| heads", "| vicreg"))]
    assert [r[:5] for r in rows] == [["| heads", "1", "end-to-end", "2", "91.00 ± 1.41"], ["| heads", "2", "layer", "2", "87.00 ± 1.41"],
                                     ["| vicreg", "1", "end-to-end", "2", "80.00 ± 0.00"]]
    assert rows[1][5] == "-4.00" and rows[1][8] == "300 ± 1 |"
    assert "Not run yet: 2 cell(s) (vicreg_granularity-layer_seed-0, vicreg_granularity-layer_seed-1)" in report
