"""`locallearn eval` options beyond re-evaluating: the readout sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datafiles import write_mnist_like
from helpers import TINY
from locallearn.cli import main


def test_readout_sweep_refits_the_readout_the_run_reported(tmp_path, capsys):
    """On noise images with random labels the readout's accuracy hangs on every detail of its fit (features, rate schedule, seed)."""
    rng = np.random.default_rng(0)
    noise = write_mnist_like(tmp_path / "noise", 0, 0, images=tuple(rng.integers(0, 256, (n, 28, 28)) for n in (600, 400)),
                             labels=tuple(rng.integers(0, 10, n) for n in (600, 400)))
    out = tmp_path / "run"
    assert main(["train", "ff-unsupervised-small", "--out", str(out), "--data-dir", str(noise), "--quiet", *TINY, "data.val_size=300",
                 "train.epochs=1", "method.readout_last=2", "eval.probe_epochs=3", "eval.probe_schedule=cosine", "eval.knn=false"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out), "--quiet", "--readout-sweep", "3", "--readout-sweep", "3,0.001,0,128"]) == 0
    as_trained, other = map(json.loads, capsys.readouterr().out.splitlines())
    assert as_trained["test"] == pytest.approx(summary["readout_test_accuracy"], abs=5e-5)
    assert as_trained["val"] == pytest.approx(summary["val_accuracy"], abs=5e-5)
    assert other["batch_size"] == 128 and (other["val"], other["test"]) != (as_trained["val"], as_trained["test"])
    assert json.loads((out / "readout-sweep.json").read_text())["readout_sweep"] == [as_trained, other]


@pytest.mark.parametrize("setting", ["ten", "3,0.001,0,128,9", "0", "3,-1"])
def test_a_bad_readout_setting_is_a_one_line_usage_error(tmp_path, capsys, setting):
    assert main(["eval", str(tmp_path), "--readout-sweep", setting]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "EPOCHS" in err
