"""What the final evaluation measures beyond accuracy (active units) and `locallearn eval`'s readout sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datafiles import write_mnist_like
from helpers import TINY, prototype_splits
from locallearn.cli import main
from locallearn.config import load_config
from locallearn.engine import Trainer
from locallearn.evaluate import active_units, evaluate_final


def test_active_units_count_the_units_that_ever_fire_with_every_label_written_in():
    """Layer 1's first 4 of 16 units are switched off and the rest on whatever the input: 75% active. Unit 0 of
    layer 1 is then made to fire only on inputs with label 3 written in: it counts once every label is tried."""
    trainer = Trainer(load_config("ff-supervised-small", ["model.hidden=[16,16]", "logging.progress=false"]), prototype_splits(n_train=30, n_test=30, size=8))
    linear = next(m for m in trainer.net.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    images = [trainer.data.val_x[i : i + 7] for i in range(0, 30, 7)]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor([-1.0] * 4 + [1.0] * 12))
        assert active_units(trainer.method, trainer.net, images)[0] == 0.75
        label3 = trainer.method.every_label_inputs(images[0])[3] - trainer.method.every_label_inputs(images[0])[2]  # label 3's pixels, less label 2's
        linear.weight[0] = 100 * label3.flatten().clamp(min=0)
    assert active_units(trainer.method, trainer.net, images)[0] == 0.8125
    assert active_units(trainer.method, trainer.net, [x[:0] for x in images]) == [None, None]


@pytest.mark.parametrize("preset", ["ff-supervised-small", "ff-unsupervised-small"])
def test_the_final_evaluation_counts_active_units_on_validation_as_active_units_does(preset):
    """Supervised FF counts them while its val classifiers run (every label written in); unsupervised FF, without
    classifiers, in a pass of its own. Layer 1's first 16 of 64 units are switched off."""
    overrides = ["model.hidden=[64,16]", "logging.progress=false", "eval.probes=false", "eval.knn=false", "data.eval_batch_size=30"]
    trainer = Trainer(load_config(preset, overrides), prototype_splits(n_train=30, n_test=30, size=8))
    linear = next(m for m in trainer.net.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        linear.weight[:16] = 0
        linear.bias[:16] = -1
    _, per_block = evaluate_final(trainer, trainer.config)
    expected = active_units(trainer.method, trainer.net, [trainer.data.val_x[i : i + 30] for i in range(0, 100, 30)])
    assert [block["active_units"] for block in per_block] == expected
    assert 0.5 < expected[0] <= 0.75 and 0 < expected[1] <= 1


def test_summary_has_each_blocks_active_units(tmp_path, data_dir):
    out = tmp_path / "run"
    args = ["train", "ff-supervised-small", "--out", str(out), "--data-dir", str(data_dir), "--quiet", *TINY, "train.epochs=1", "eval.probes=false", "eval.knn=false"]
    assert main(args) == 0
    assert all(0 < block["active_units"] <= 1 for block in json.loads((out / "summary.json").read_text())["per_block"])
    assert main([*args[:3], str(tmp_path / "off"), *args[4:], "eval.active_units=false"]) == 0
    assert all("active_units" not in block for block in json.loads((tmp_path / "off" / "summary.json").read_text())["per_block"])


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
