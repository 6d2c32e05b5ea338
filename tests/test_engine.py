"""The engine: locality of every gradient, granularity, schedules, and one block == plain backprop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import gradient_leaks, tiny_config, tiny_splits
from locallearn.engine import Trainer, lr_factor, train_step
from locallearn.errors import UsageError
from locallearn.nn.network import group_layers


@pytest.mark.parametrize(
    "preset, granularity",
    [("ff-bench", "layer"), ("ff-bench", "block:2"), ("backprop-mlp", "layer"), ("backprop-mlp", "block:2"), ("backprop-mlp", "end-to-end")],
)
def test_no_loss_reaches_a_parameter_outside_its_block(tmp_path, preset, granularity):
    """Every gradient that any block's loss produces lands on that block's own parameters."""
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config(preset, tmp_path, f"train.granularity={granularity}"), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    assert gradient_leaks(trainer, views) == []


def test_locality_check_catches_a_leak(tmp_path):
    """The same check fails when the cut between blocks is removed (so the test above can fail)."""
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    first, second = trainer.net.blocks[0], trainer.net.blocks[1]
    loss, _ = second.objective(second(first(views.inputs)), views)  # no detach in between
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())


def test_one_block_cross_entropy_is_plain_backprop(tmp_path):
    """End-to-end granularity with the backprop method gives the same weights as a hand-written loop."""
    data = tiny_splits(tmp_path)
    config = tiny_config("backprop-mlp", tmp_path, "train.granularity=end-to-end", "optim.name=sgd", "optim.lr=0.05", "optim.schedule=constant")
    trainer = Trainer(config, data)
    assert len(trainer.net.blocks) == 1
    reference = copy.deepcopy(trainer.net.blocks[0])
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=config.optim.momentum)
    for x, y, _ in trainer.batcher.batches(0):
        loss = F.cross_entropy(reference.objective.head(reference.layers(x).flatten(1)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trainer.train_epoch()
    for (name, mine), theirs in zip(trainer.net.blocks[0].state_dict().items(), reference.state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_training_changes_only_through_optimizers_of_each_block(tmp_path):
    """Every block's parameters move in a step (each block has a working optimizer)."""
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path), data)
    before = [copy.deepcopy(b.state_dict()) for b in trainer.net.blocks]
    x, y, index = next(iter(trainer.batcher.batches(0)))
    train_step(trainer.net.blocks, trainer.optimizers, trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0)))
    for block, old in zip(trainer.net.blocks, before):
        assert any(not torch.equal(v, old[k]) for k, v in block.state_dict().items())


@pytest.mark.parametrize("granularity, sizes", [("layer", [1, 1, 1, 1]), ("end-to-end", [4]), ("block:2", [2, 2]), ("block:3", [1, 2, 1]), ("block:4", [1, 1, 1, 1])])
def test_granularity_groups_consecutive_layers(granularity, sizes):
    layers = [torch.nn.Linear(2, 2) for _ in range(4)]
    groups = group_layers(layers, granularity)
    assert [len(g) for g in groups] == sizes
    assert [l for g in groups for l in g] == layers


def test_learning_rate_schedules():
    assert lr_factor("constant", 70, 100) == 1.0
    assert lr_factor("linear-decay", 50, 100) == 1.0
    assert lr_factor("linear-decay", 75, 100) == pytest.approx(0.5)
    assert lr_factor("linear-decay", 100, 100) == 0.0
    assert lr_factor("cosine", 0, 100) == 1.0
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 100) == pytest.approx(0.0)


def test_schedule_reaches_zero_at_the_end_of_training(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path, "optim.schedule=linear-decay"), data)
    trainer.train_epoch()
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3)  # still constant at half-way
    trainer.train_epoch()
    assert all(opt.param_groups[0]["lr"] == 0.0 for opt in trainer.optimizers)


def test_lars_matches_its_definition():
    """Weights: momentum SGD on (g + wd w) scaled by eta |w| / |g + wd w|; biases: plain momentum SGD."""
    from locallearn.lars import LARS

    torch.manual_seed(0)
    weight, bias = torch.randn(5, 4, requires_grad=True), torch.randn(5, requires_grad=True)
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    optimizer = LARS([weight, bias], lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02)
    grads = [(torch.randn(5, 4), torch.randn(5)) for _ in range(2)]
    w, b, mw, mb = w0.clone(), b0.clone(), torch.zeros(5, 4), torch.zeros(5)
    for gw, gb in grads:
        weight.grad, bias.grad = gw.clone(), gb.clone()
        optimizer.step()
        dw = gw + 0.01 * w
        mw = 0.9 * mw + 0.02 * w.norm() / dw.norm() * dw
        mb = 0.9 * mb + gb
        w, b = w - 0.5 * mw, b - 0.5 * mb
    torch.testing.assert_close(weight.detach(), w)
    torch.testing.assert_close(bias.detach(), b)


def test_warmup_ramps_linearly_into_the_schedule():
    assert lr_factor("cosine", 0, 1000, warmup=0.1) == pytest.approx(1 / 101)
    assert lr_factor("cosine", 99, 1000, warmup=0.1) == pytest.approx(100 / 101)
    assert lr_factor("cosine", 100, 1000, warmup=0.1) == pytest.approx(lr_factor("cosine", 100, 1000))


def test_block_lr_scale_trains_each_block_at_its_own_rate(tmp_path):
    """With factors (0.5, 0.25) the first block ends exactly as in a run at half the rate (it depends on no other
    block), and every block's schedule starts from its own rate."""
    data = tiny_splits(tmp_path)

    def trained(*overrides: str) -> Trainer:
        trainer = Trainer(tiny_config("ff-bench", tmp_path, "optim.lr=0.002", *overrides), data)
        trainer.train_epoch()
        return trainer

    scaled, half = trained("optim.block_lr_scale=[0.5,0.25]"), trained("optim.lr=0.001")
    assert [schedule.base_lrs for schedule in scaled.schedules] == [[pytest.approx(0.001)], [pytest.approx(0.0005)], [pytest.approx(0.0005)]]  # the last factor repeats
    for name, value in scaled.net.blocks[0].state_dict().items():
        assert torch.equal(value, half.net.blocks[0].state_dict()[name]), name


def test_block_lr_scale_has_at_most_one_factor_per_block(tmp_path):
    with pytest.raises(UsageError, match="4 factors but the network has only 3 blocks"):
        Trainer(tiny_config("ff-bench", tmp_path, "optim.block_lr_scale=[1,0.5,0.5,0.5]"), tiny_splits(tmp_path))
