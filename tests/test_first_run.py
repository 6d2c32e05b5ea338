"""A first run without silences or surprises: progress and ETA, did-you-mean, exit codes, resuming a
finished run, consistent summary numbers, readable files, and the presets listing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import TINY, tiny_dataset_folder
from locallearn.atomic import write_text_atomic
from locallearn.cli import main
from locallearn.config import load_config, preset_names
from locallearn.errors import UsageError
from locallearn.monitor import format_duration, training_left
from locallearn.records import preset_record, write_record
from locallearn.summary import rounded

EPOCHS = 3


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`main(argv)` with its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run trained with its progress shown (stderr not a terminal), under umask 022: (folder, status, stderr)."""
    root = tmp_path_factory.mktemp("first-run")
    data_dir = tiny_dataset_folder(root)
    out = root / "run"
    mask = os.umask(0o022)
    try:
        status, _, err = run_main(["train", "ff-supervised-small", "--out", str(out), "--data-dir", str(data_dir), *TINY, f"train.epochs={EPOCHS}"])
    finally:
        os.umask(mask)
    assert status == 0, err
    return out, err


def test_each_epoch_line_gives_the_training_time_left_until_the_last(finished):
    _, err = finished
    lines = [line for line in err.splitlines() if re.match(r"epoch \d+/\d+: loss", line)]
    assert [line.split(":")[0] for line in lines] == [f"epoch {e}/{EPOCHS}" for e in range(1, EPOCHS + 1)]
    assert all("of training left" in line for line in lines[:-1]) and "left" not in lines[-1]


def test_a_terminal_hears_what_the_set_up_is_doing(tmp_path, monkeypatch, capsys):
    """Importing PyTorch, loading the data and building the network take seconds each on a busy machine."""
    data_dir = tiny_dataset_folder(tmp_path)
    argv = ["train", "ff-supervised-small", "--out", str(tmp_path / "run"), "--data-dir", str(data_dir), *TINY, "train.epochs=1",
            "eval.probes=false", "eval.knn=false"]
    assert main(argv) == 0
    assert "loading" not in capsys.readouterr().err  # captured: not a terminal, so an error would stay the only line
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert main(["train", "ff-supervised-small", "--out", str(tmp_path / "again"), *argv[4:]]) == 0
    assert capsys.readouterr().err.startswith("starting: importing PyTorch…\nloading mnist…\nbuilding the network and the ff-supervised method…\n")
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().err.startswith(f"starting: importing PyTorch…\nloading the run in {tmp_path / 'run'}: ")


def test_training_left_is_epochs_left_times_the_mean_epoch():
    history = [{"epoch": 1, "epoch_seconds": 2.0}, {"epoch": 2, "epoch_seconds": 4.0}]
    assert training_left(history, 5) == pytest.approx(9.0)
    assert training_left(history, 2) == 0.0 and training_left([], 5) is None
    assert [format_duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


def test_the_final_evaluation_names_each_phase_as_it_starts_and_ends_with_their_times(finished):
    _, err = finished
    started = [m.group(1) for m in re.finditer(r"^final evaluation: (.+)…$", err, re.M)]
    assert started == ["val classifiers", "test classifiers", "train features", "val features", "test features", "probes", "kNN"]
    last = [line for line in err.splitlines() if line.startswith("final evaluation: ")][-1]
    assert re.match(r"final evaluation: \d+s \(val classifiers \d+s, .*kNN \d+s\)$", last), last


def test_eval_shows_its_phases_and_quiet_hides_them(finished):
    out, _ = finished
    status, _, err = run_main(["eval", str(out), "eval.knn=false"])
    assert status == 0
    assert re.findall(r"^evaluation: (.+)…$", err, re.M) == ["val classifiers", "test classifiers", "train features", "val features", "test features", "probes"]
    status, _, err = run_main(["eval", str(out), "--quiet", "eval.probes=false", "eval.knn=false"])
    assert status == 0 and err == ""


def test_eval_runs_on_the_runs_threads(finished):
    import torch

    out, _ = finished
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert run_main(["eval", str(out), "--quiet", "train.threads=1", "eval.probes=false", "eval.knn=false"])[0] == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_summary_numbers_are_exact_fractions_rounded_once(finished):
    out, _ = finished
    text = (out / "summary.json").read_text()
    summary = json.loads(text)
    tests = 200  # the tiny dataset's test split
    accuracies = [summary["test_accuracy"], *summary["test_accuracy_by_classifier"].values()]
    accuracies += [b[key] for b in summary["per_block"] for key in ("accuracy", "probe_accuracy", "knn_accuracy")]
    for accuracy in accuracies:
        assert accuracy * tests == pytest.approx(round(accuracy * tests), abs=1e-9), accuracy  # a count of examples, not float32 noise
    for key in ("train_seconds", "seconds_per_epoch", "samples_per_second", "peak_rss_mb"):
        assert summary[key] == round(summary[key], 3), key
    assert not re.search(r"\d\.\d{7,}", text)  # no number anywhere with more than 6 decimals


def test_rounded_rounds_every_float_inside_and_keeps_the_rest():
    assert rounded({"a": [0.8748999834060669, None, 3], "b": "x"}, 4) == {"a": [0.8749, None, 3], "b": "x"}


def test_run_folder_files_get_the_umasks_mode_not_a_private_one(finished):
    out, _ = finished
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.yaml", "metrics.jsonl", "summary.json", "checkpoint.json"} <= {p.name for p in files}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o644) for p in files}


def test_an_atomic_write_follows_the_umask(tmp_path):
    mask = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished):
    out, _ = finished
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file() and p.name != "eval.json"}
    status, stdout, err = run_main(["train", "ff-supervised-small", "--out", str(out), "--resume"])
    assert status == 0 and "epoch" not in err and "evaluation" not in err
    assert stdout.count("\n") == 1 and "already finished" in stdout and f"{EPOCHS} epochs" in stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file() and p.name != "eval.json"}
    assert after == before  # no new checkpoint, no metrics line, no summary written again


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["train", "ff-supervsed"], "did you mean 'ff-supervised'?"),
        (["presets", "ff-supervsed-small"], "did you mean 'ff-supervised-small'?"),
        (["train", "ff-bench", "train.epochz=3"], "did you mean 'epochs'?"),
        (["train", "ff-bench", "trian.epochs=3"], "did you mean 'train'?"),
        (["train", "ff-bench", "method.name=ff-supervisd"], "did you mean 'ff-supervised'?"),
    ],
)
def test_a_mistyped_name_is_a_usage_error_with_a_suggestion(argv, suggestion):
    status, _, err = run_main(argv)
    assert status == 2 and suggestion in err and err.count("\n") == 1, err


def test_a_name_far_from_every_choice_gets_no_suggestion():
    status, _, err = run_main(["train", "zzzzzz"])
    assert status == 2 and "did you mean" not in err and "valid presets" in err


def test_every_usage_mistake_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    for argv in (["train", "ff-bench", "--out", str(tmp_path / "missing"), "--resume"],
                 ["train", "ff-bench", "--resume"],
                 ["eval", str(tmp_path / "empty")],
                 ["presets", "a", "b"]):
        status, _, err = run_main(argv)
        assert status == 2 and err.startswith("locallearn: error: ") and err.count("\n") == 1, (argv, err)


def reference_record(preset: str) -> dict:
    return {"record_version": 1, "name": preset, "source": "run", "command": f"locallearn train {preset}",
            "code_version": {"commit": None, "dirty": None}, "machine": {"cores": 2}, "config": None,
            "summary": {"test_accuracy": 0.8749, "train_seconds": 114.2}, "note": ""}


def test_presets_lists_one_short_line_each_with_the_measured_numbers(tmp_path, monkeypatch):
    write_record(tmp_path / "presets" / "ff-supervised-small.json", reference_record("ff-supervised-small"))
    monkeypatch.setenv("LOCALLEARN_RESULTS", str(tmp_path))
    status, stdout, _ = run_main(["presets"])
    assert status == 0
    lines = {line.split()[0]: line for line in stdout.splitlines()[1:]}
    assert sorted(lines) == preset_names()
    assert re.search(r"Quick supervised FF.*\s87\.49%\s+1m54s$", lines["ff-supervised-small"])
    assert lines["ff-bench"].split()[-2:] == ["–", "–"]
    assert max(len(line) for line in stdout.splitlines()) <= 120


def test_presets_name_shows_the_description_the_measurement_and_the_yaml(tmp_path, monkeypatch):
    write_record(tmp_path / "presets" / "ff-supervised-small.json", reference_record("ff-supervised-small"))
    monkeypatch.setenv("LOCALLEARN_RESULTS", str(tmp_path))
    status, stdout, _ = run_main(["presets", "ff-supervised-small"])
    assert status == 0
    assert "2x500 ReLU, uniform wrong labels" in stdout  # the full description
    assert "test accuracy 87.49%, training 1m54s on 2 CPU cores" in stdout
    assert "hidden: [500, 500]" in stdout and stdout.rstrip().endswith("schedule: linear-decay")


def test_preset_record_is_none_without_a_record(tmp_path):
    assert preset_record("ff-bench", tmp_path) is None
    write_record(tmp_path / "presets" / "ff-bench.json", reference_record("ff-bench"))
    assert preset_record("ff-bench", tmp_path)["summary"]["train_seconds"] == 114.2


def test_every_preset_has_a_summary_of_one_short_line():
    for name in preset_names():
        summary = load_config(name).summary
        assert 0 < len(summary) <= 80 and "\n" not in summary, name
    with pytest.raises(UsageError, match="summary"):
        load_config("ff-bench", ["summary=" + "x" * 81])


def test_setup_prints_a_few_lines_and_keeps_pips_output_in_its_log(tmp_path):
    """scripts/setup.sh with a stand-in python that logs its arguments and prints pip-like noise (no network, no install)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "python"
    fake.write_text('#!/bin/sh\necho "$*" >> "$CALLS"\n[ "$1" = -c ] && exit 0\nfor i in $(seq 150); do echo "Collecting thing $i"; done\n'
                    '[ -n "$FAIL" ] && echo "ERROR: no matching distribution" && exit 1\nexit 0\n')
    fake.chmod(0o755)
    script = Path(__file__).parents[1] / "scripts" / "setup.sh"
    env = {**os.environ, "VENV": str(venv), "CALLS": str(tmp_path / "calls")}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) <= 3 and "Collecting" not in done.stdout + done.stderr
    assert (venv / "setup.log").read_text().count("Collecting thing") == 150
    assert (tmp_path / "calls").read_text().splitlines()[-1].endswith("install -e .")  # training needs no extras
    subprocess.run(["bash", str(script), "dev"], env=env, capture_output=True, text=True, check=True)
    assert (tmp_path / "calls").read_text().splitlines()[-1].endswith("install -e .[dev]")
    failed = subprocess.run(["bash", str(script)], env={**env, "FAIL": "1"}, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "ERROR: no matching distribution" in failed.stderr and str(venv / "setup.log") in failed.stderr
    assert len(failed.stderr.splitlines()) <= 25
