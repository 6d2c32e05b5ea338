"""Locality, for every registered method and each of its objectives: no loss reaches a parameter outside its block.

The cases come from the registry (`locallearn.methods.METHODS`), so a new method is checked
without a new test: each runs one training step of the first built-in preset that uses the
method (one block per layer), once per choice of its `loss` / `objective` option, through the
method's own step if it has one. The checker itself is shown to fail when the cut is removed.
"""

from __future__ import annotations

import typing

import pytest
import torch

from helpers import gradient_leaks, prototype_splits, tiny_config
from locallearn.config import load_yaml, preset_names, preset_text
from locallearn.engine import Trainer
from locallearn.methods import METHODS

OBJECTIVE_OPTIONS = ("loss", "objective")  # the method options that choose a block's objective


def first_preset(method: str) -> str | None:
    """The first built-in preset (by name) that trains `method` on images in memory."""
    for name in preset_names():
        tree = load_yaml(preset_text(name))
        if tree["method"]["name"] == method and tree.get("data", {}).get("name") != "imagefolder":
            return name
    return None


def objective_choices(options) -> list[str]:
    """`method.KEY=VALUE` overrides for every value of the method's objective-choosing options ([""]: none)."""
    choices = [f"method.{key}={value}" for key, field in options.model_fields.items() if key in OBJECTIVE_OPTIONS
               and typing.get_origin(field.annotation) is typing.Literal for value in typing.get_args(field.annotation)]
    return choices or [""]


CASES = [pytest.param(name, choice, id=f"{name}{'-' + choice.split('=')[1] if choice else ''}")
         for name, cls in sorted(METHODS.items()) for choice in objective_choices(cls.Options)]


@pytest.fixture(scope="module")
def data():
    return prototype_splits(n_train=64, n_test=10)


def one_step_trainer(tmp_path, data, method: str, *overrides: str) -> tuple[Trainer, object]:
    preset = first_preset(method)
    if preset is None:
        pytest.fail(f"method {method!r} has no built-in preset (on in-memory data) for the locality test to run")
    config = tiny_config(preset, tmp_path, "train.granularity=layer", "data.batch_size=16", *[o for o in overrides if o])
    trainer = Trainer(config, data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    return trainer, trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method, objective", CASES)
def test_no_loss_reaches_a_parameter_outside_its_block(tmp_path, data, one_thread, method, objective):
    trainer, views = one_step_trainer(tmp_path, data, method, objective)
    assert len(trainer.net.blocks) > 1
    assert gradient_leaks(trainer, views) == []


def test_the_check_fails_when_the_cut_is_removed(tmp_path, data):
    """A step that feeds each block the previous block's output without detaching it: every earlier block leaks."""
    trainer, views = one_step_trainer(tmp_path, data, "ff-supervised")

    def uncut_step(blocks, optimizers, step_views, precision):
        h, total = step_views.inputs, 0
        for block in blocks:
            h, loss, _ = block(h, step_views)
            total = total + loss
        total.backward()
        return [], h

    blocks = len(trainer.net.blocks)
    assert gradient_leaks(trainer, views, uncut_step) == sorted((owner, loser) for loser in range(blocks) for owner in range(loser))
