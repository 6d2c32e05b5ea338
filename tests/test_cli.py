"""The command line and the run folder: contents, exact resume, eval, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import TINY
from locallearn import cli, run
from locallearn.cli import main
from locallearn.config import load_config


def train_cli(out, data_dir, *extra):
    return main(["train", "ff-supervised-small", "--out", str(out), "--data-dir", str(data_dir), "--quiet", *TINY, *extra])


def test_train_writes_the_run_folder(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert train_cli(out, data_dir, "train.epochs=2") == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("preset", "method", "dataset", "epochs", "test_accuracy", "val_accuracy", "train_seconds",
                "seconds_per_epoch", "samples_per_second", "peak_rss_mb", "per_block"):
        assert key in summary, key
    assert summary["preset"] == "ff-supervised-small" and summary["method"] == "ff-supervised"
    assert summary["dataset"] == "mnist" and summary["epochs"] == 2
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert [b["name"] for b in summary["per_block"]] == ["layer1", "layer2"]
    assert all(0.0 <= b["probe_accuracy"] <= 1.0 for b in summary["per_block"])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["hidden"] == [32, 32] and config["data"]["dir"] == str(data_dir)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines[:-1]] == [1, 2] and "final" in lines[-1]
    assert "val" in lines[0]
    assert sorted(p.name for p in out.glob("checkpoint*")) == ["checkpoint-0002.safetensors", "checkpoint.json"]
    assert "test_accuracy=" in capsys.readouterr().out


def test_a_run_with_no_classifier_reports_none_and_eval_can_add_the_probes(tmp_path, data_dir, capsys):
    """Unsupervised FF classifies only through its readout: without probes the run has no accuracy, not a crash."""
    out = tmp_path / "run"
    assert main(["train", "ff-unsupervised-small", "--out", str(out), "--data-dir", str(data_dir), "--quiet", *TINY,
                 "train.epochs=1", "eval.probes=false", "eval.knn=false"]) == 0
    assert "test_accuracy=none val_accuracy=none" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["test_accuracy"] is None
    assert main(["eval", str(out), "eval.probes=true"]) == 0
    assert 0.0 < json.loads((out / "eval.json").read_text())["readout"]["test"] <= 1.0


def test_a_run_without_a_validation_split_trains_evaluates_and_reports_none(tmp_path, data_dir, capsys):
    """`data.val_size=0` (the final run on every training example): no validation anywhere, test numbers as usual."""
    out = tmp_path / "run"
    assert train_cli(out, data_dir, "train.epochs=1", "data.val_size=0") == 0
    assert "val_accuracy=none" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_accuracy"] is None and 0.0 < summary["test_accuracy"] <= 1.0
    assert all(b["probe_val_accuracy"] is None and 0.0 < b["probe_accuracy"] <= 1.0 for b in summary["per_block"])
    assert "val" not in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert main(["eval", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())["val"] == {}


def test_resume_ends_exactly_where_an_uninterrupted_run_ends(tmp_path, data_dir):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train_cli(whole, data_dir, "train.epochs=3", "method.negatives=hard") == 0

    def stop_after_first_epoch(trainer, record):
        if trainer.epoch == 1:
            raise KeyboardInterrupt

    config = load_config("ff-supervised-small", [f"data.dir={data_dir}", *TINY, "train.epochs=3", "method.negatives=hard", "logging.progress=false"])
    with pytest.raises(KeyboardInterrupt):
        run.train(config, "ff-supervised-small", parts, callbacks=[stop_after_first_epoch])
    assert json.loads((parts / "checkpoint.json").read_text())["epoch"] == 1
    assert main(["train", "ff-supervised-small", "--out", str(parts), "--resume", "--quiet"]) == 0  # the saved config

    a, b = load_file(whole / "checkpoint-0003.safetensors"), load_file(parts / "checkpoint-0003.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    strip = lambda r: {k: v for k, v in r.items() if k not in ("epoch_seconds", "samples_per_second")}
    runs = [[json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()] for folder in (whole, parts)]
    assert [strip(r) for r in runs[0]] == [strip(r) for r in runs[1]]


def test_eval_reevaluates_a_saved_run(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    train_cli(out, data_dir, "train.epochs=1")
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"]["goodness"] == pytest.approx(summary["test_accuracy"])
    assert json.loads((out / "eval.json").read_text())["epoch"] == 1


def test_eval_overrides_change_the_scoring_not_the_weights(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    train_cli(out, data_dir, "train.epochs=1", "method.skip_first=false")
    weights = (out / "checkpoint-0001.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["eval", str(out), "method.skip_first=true", "eval.probes=false"]) == 0
    test = json.loads(capsys.readouterr().out)["test"]
    assert test["goodness"] == test["layer2"]  # the first of the two layers is skipped
    assert json.loads((out / "eval.json").read_text())["overrides"] == ["method.skip_first=true", "eval.probes=false"]
    assert (out / "checkpoint-0001.safetensors").read_bytes() == weights
    assert main(["eval", str(out), "model.hidden=[16,16]"]) == 1
    assert "for another architecture" in one_line_error(capsys)
    assert main(["eval", str(out), "method.skip_frist=true"]) == 2
    assert "unknown key 'method.skip_frist'" in one_line_error(capsys)


def test_presets_lists_every_preset_with_descriptions_in_one_column(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"ff-supervised", "ff-supervised-small", "backprop-mlp", "ff-bench", "blockwise-barlow-imagenet"} <= set(names)
    assert len({len(line) - len(line[len(name):].lstrip()) for line, name in zip(lines, names)}) == 1


def test_output_into_a_closed_pipe_ends_quietly_with_the_sigpipe_status():
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `locallearn presets | head` once head has exited
    result = subprocess.run([sys.executable, "-m", "locallearn", "presets"], stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    assert result.returncode == 141 and result.stderr == ""


def test_a_broken_pipe_other_than_stdout_is_not_hidden(monkeypatch):
    def lost_peer(args):
        raise BrokenPipeError("a worker's pipe")

    monkeypatch.setitem(cli.COMMANDS, "presets", lost_peer)
    with pytest.raises(BrokenPipeError):
        main(["presets"])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("locallearn: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["train", "no-such-preset"], 2, "unknown preset 'no-such-preset'"),
        (["train", "ff-bench", "train.epochz=3"], 2, "unknown key 'train.epochz'"),
        (["train", "ff-bench", "train.epochs=many"], 2, "invalid value for 'train.epochs'"),
        (["train", "ff-bench", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["train", "ff-bench", "method.skip_first=true", "method.score_depth=1"], 2, "leaves no block to sum"),
        (["frobnicate"], 2, "invalid choice"),
        (["eval", "/nonexistent/run"], 2, "not a run folder"),
    ],
)
def test_bad_commands_are_one_line_errors(args, status, message, capsys):
    assert main(args) == status
    assert message in one_line_error(capsys)


def test_missing_data_says_where_it_looked(tmp_path, data_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "ff-bench", "--out", str(tmp_path / "run"), "--data-dir", str(empty), *TINY]) == 1
    err = one_line_error(capsys)
    assert str(empty) in err and "cache" in err
    assert not (tmp_path / "run").exists()


def test_a_run_refused_by_its_trainer_leaves_no_folder(tmp_path, data_dir, capsys):
    assert train_cli(tmp_path / "new", data_dir, "optim.block_lr_scale=[1,1,1,1,1,1]") == 2
    assert "optim.block_lr_scale" in one_line_error(capsys) and not (tmp_path / "new").exists()
    (tmp_path / "given").mkdir()
    assert train_cli(tmp_path / "given", data_dir, "optim.block_lr_scale=[1,1,1,1,1,1]") == 2
    assert (tmp_path / "given").is_dir()


def test_unwritable_out_is_a_run_error(tmp_path, data_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert train_cli(blocker / "run", data_dir) == 1
    assert "cannot write to output folder" in one_line_error(capsys)


def test_resume_without_checkpoint(tmp_path, data_dir, capsys):
    assert train_cli(tmp_path / "fresh", data_dir, "--resume") == 2
    assert "no run to resume" in one_line_error(capsys)


def test_existing_run_is_not_overwritten(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    train_cli(out, data_dir, "train.epochs=1")
    before = (out / "summary.json").read_bytes()
    assert train_cli(out, data_dir, "train.epochs=1") == 2
    assert "already holds a run" in one_line_error(capsys)
    assert (out / "summary.json").read_bytes() == before


def test_resume_refuses_other_settings(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    train_cli(out, data_dir, "train.epochs=1")
    assert train_cli(out, data_dir, "--resume", "optim.lr=0.5") == 2
    assert "other settings (optim.lr)" in one_line_error(capsys)
    assert main(["train", "ff-bench", "--out", str(out), "--resume"]) == 2
    assert "made from preset 'ff-supervised-small', not 'ff-bench'" in one_line_error(capsys)


def test_resume_can_extend_a_finished_run_on_other_threads(tmp_path, data_dir):
    """The thread count is the machine's, not the run's: a run may continue on more (or fewer) cores."""
    out, threads = tmp_path / "run", torch.get_num_threads()
    try:
        train_cli(out, data_dir, "train.epochs=1", "train.threads=1")
        assert main(["train", "ff-supervised-small", "--out", str(out), "--resume", "--quiet", "train.epochs=2", "train.threads=2"]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["epochs"], summary["threads"]) == (2, 2)


def test_divergence_stops_with_the_block_and_step_and_keeps_the_last_checkpoint(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    status = main(["train", "backprop-mlp", "--out", str(out), "--data-dir", str(data_dir), "--quiet", *TINY,
                   "train.granularity=layer", "optim.name=sgd", "optim.lr=1e12", "train.epochs=2"])
    assert status == 1
    err = one_line_error(capsys)
    assert "the loss of block 'layer1'" in err and "at epoch 1, step" in err
    assert not (out / "summary.json").exists()
    assert not list(out.glob(".*.tmp"))


def test_failures_change_no_file_outside_out(tmp_path, data_dir, capsys):
    """Bad commands and failing runs leave every file outside --out as it was (and write no summary)."""
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in data_dir.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes()[:-7])  # every file truncated

    def snapshot():
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file() and "out" not in p.parts}

    before = snapshot()
    out = tmp_path / "out"
    for extra in (["--data-dir", str(corrupt)], ["train.epochs=-1"], ["--data-dir", str(data_dir), "optim.lr=1e12", "optim.name=sgd", "method.name=backprop"]):
        assert main(["train", "ff-bench", "--out", str(out), "--quiet", *TINY, *extra]) in (1, 2)
        one_line_error(capsys)
    assert snapshot() == before
    assert not (out / "summary.json").exists()
