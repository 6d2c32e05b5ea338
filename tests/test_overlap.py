"""LoCo's overlapping blocks (`train.overlap`): which boundary a loss crosses, and the gradients it gives.

The generic locality test (test_locality.py) holds every method to "no loss leaves its block".
Overlap breaks that rule on purpose and by exactly one boundary: block k's loss trains block
k and block k−1, never block k−2. These tests measure the gradients a step leaves on every
parameter, so they see the crossing whichever way the step carries it.
"""

from __future__ import annotations

import copy

import pytest
import torch

from helpers import assert_resume_is_exact, prototype_splits, tiny_config
from locallearn.distributed.context import DistContext
from locallearn.engine import Trainer, overlap_step, train_step
from locallearn.errors import UsageError


@pytest.fixture(scope="module")
def data():
    return prototype_splits(n_train=64, n_test=10)


def trainer_and_views(tmp_path, data, preset: str, *overrides: str):
    config = tiny_config(preset, tmp_path, "train.granularity=layer", "data.batch_size=16", "optim.name=sgd", "optim.momentum=0", *overrides)
    trainer = Trainer(config, data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    return trainer, trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))


def blocks_trained_by(trainer, views, step, source: int) -> list[int]:
    """The blocks whose parameters get a non-zero gradient when only block `source`'s loss counts (the others' are scaled by 0)."""
    for index, block in enumerate(trainer.net.blocks):
        original = block.objective.forward

        def forward(out, step_views, _original=original, _scale=float(index == source), **inputs):
            loss, metrics = _original(out, step_views, **inputs)
            return loss * _scale, metrics

        block.objective.forward = forward
    try:
        step(trainer.net.blocks, trainer.optimizers, views, "fp32")
    finally:
        for block in trainer.net.blocks:
            del block.objective.forward
    return [i for i, block in enumerate(trainer.net.blocks)
            if any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in block.trainable_parameters())]


@pytest.mark.parametrize("preset", ["greedy-supervised", "blockwise-vicreg", "blockwise-dino"])
def test_each_loss_crosses_exactly_one_boundary(tmp_path, data, one_thread, preset):
    """With overlap, block k's loss trains blocks k−1 and k; without it, block k alone (the check can tell them apart)."""
    trainer, views = trainer_and_views(tmp_path, data, preset)
    blocks = len(trainer.net.blocks)
    assert blocks >= 3
    for source in range(blocks):
        assert blocks_trained_by(trainer, views, overlap_step, source) == sorted({max(source - 1, 0), source})
        assert blocks_trained_by(trainer, views, train_step, source) == [source]


def test_the_overlap_step_gives_the_gradients_of_two_block_losses(tmp_path, data, one_thread):
    """Block k steps on the gradient of (its loss + the next block's loss, through the next block on its undetached output)."""
    trainer, views = trainer_and_views(tmp_path, data, "greedy-supervised", "optim.lr=0.1")
    reference = copy.deepcopy(trainer.net.blocks)
    overlap_step(trainer.net.blocks, trainer.optimizers, views, "fp32")

    inputs = [views.inputs]
    for block in reference:
        inputs.append(block(inputs[-1], views)[0].detach())
    for k, block in enumerate(reference):
        out, loss, _ = block(inputs[k], views)
        if k + 1 < len(reference):
            loss = loss + reference[k + 1](out, views)[1]
        grads = torch.autograd.grad(loss, list(block.trainable_parameters()))
        for p, g, trained in zip(block.trainable_parameters(), grads, trainer.net.blocks[k].trainable_parameters()):
            torch.testing.assert_close(trained, p - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_one_block_with_overlap_is_plain_backprop(tmp_path, data, one_thread):
    trainer, views = trainer_and_views(tmp_path, data, "greedy-supervised", "train.granularity=end-to-end")
    twin = copy.deepcopy(trainer)
    overlap_step(trainer.net.blocks, trainer.optimizers, views, "fp32")
    train_step(twin.net.blocks, twin.optimizers, views, "fp32")
    for a, b in zip(trainer.net.parameters(), twin.net.parameters()):
        assert torch.equal(a, b)


def test_a_small_net_learns_with_overlap(tmp_path, one_thread):
    data = prototype_splits(n_train=600, n_test=200)
    config = tiny_config("greedy-supervised", tmp_path, "train.granularity=layer", "train.overlap=true", "train.epochs=3")
    trainer = Trainer(config, data)
    for _ in range(3):
        record = trainer.train_epoch()
    last = record["blocks"][trainer.net.blocks[-1].name]
    assert last["train_acc"] > 0.6


def test_overlap_is_refused_where_a_block_boundary_is_not_the_engines(tmp_path, data):
    with pytest.raises(UsageError, match="train.overlap does not apply to method 'ff-recurrent'"):
        Trainer(tiny_config("ff-recurrent-small", tmp_path, "train.overlap=true"), data)
    with pytest.raises(UsageError, match="train.overlap cannot run as a pipeline"):
        Trainer(tiny_config("greedy-supervised", tmp_path, "train.overlap=true"), data, dist=DistContext(rank=0, world=2, mode="pipeline"))


def test_resume_inside_an_epoch_is_exact_with_overlap(tmp_path, data, one_thread):
    config = tiny_config("greedy-supervised", tmp_path, "train.granularity=layer", "train.overlap=true", "data.batch_size=16")
    assert_resume_is_exact(config, data, tmp_path)


def test_the_trainer_takes_the_overlap_step_when_asked(tmp_path, data, one_thread):
    """One step each (one batch per epoch): with train.overlap the first block trains differently, the last block identically."""
    batch = f"data.batch_size={len(data.train_x)}"
    plain, overlap = (Trainer(tiny_config("greedy-supervised", tmp_path, "train.granularity=layer", batch, f"train.overlap={o}"), data) for o in ("false", "true"))
    for trainer in (plain, overlap):
        assert len(trainer.batcher) == 1
        trainer.train_epoch()
    def weights(trainer, index: int) -> list[torch.Tensor]:
        return list(trainer.net.blocks[index].layers.state_dict().values())

    assert any(not torch.equal(a, b) for a, b in zip(weights(plain, 0), weights(overlap, 0)))
    assert all(torch.equal(a, b) for a, b in zip(weights(plain, -1), weights(overlap, -1)))
