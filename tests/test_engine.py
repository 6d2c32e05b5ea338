"""The engine: granularity, schedules, one block == plain backprop, and the extension points methods build on.

Locality of every gradient, for every registered method, is tests/test_locality.py."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import stop_and_resume, tiny_config, tiny_splits
from locallearn import methods
from locallearn.distributed.context import DistContext
from locallearn.engine import Divergence, Trainer, train_step
from locallearn.optim import lr_factor
from locallearn.errors import UsageError
from locallearn.methods.ff_supervised import FFSupervised
from locallearn.nn.network import build_layers, group_layers
from locallearn.nn.teacher import ema_update, freeze, momentum_schedule


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
    from locallearn.optim.lars import LARS

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


# --- extension points: a teacher objective, a per-step hook, a method-owned step, capabilities, own layers ---


class TeacherObjective(torch.nn.Module):
    """An FF objective that also owns a frozen copy of its block's layers, made by `bind` (what DINO and BYOL need)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def bind(self, layers: torch.nn.Sequential) -> None:
        self.teacher = freeze(copy.deepcopy(layers))

    def forward(self, out, views):
        return self.inner(out, views)

    def score(self, out):
        return self.inner.score(out)


class EMATeacherFF(FFSupervised):
    """Supervised FF whose blocks' teachers follow their layers after every step; counts its steps in `state`."""

    name = "test-ema-teacher"

    def __init__(self, options, data):
        super().__init__(options, data)
        self.seen: list[tuple[int, int]] = []
        self.count = torch.zeros((), dtype=torch.int64)

    def objective(self, index, num_blocks, width):
        return TeacherObjective(super().objective(index, num_blocks, width))

    def after_step(self, net, step, total_steps):
        self.seen.append((step, total_steps))
        self.count += 1
        for block in net.blocks:
            ema_update(block.objective.teacher, block.layers, momentum_schedule(0.9, step, total_steps))

    def state(self):
        return {**super().state(), "count": self.count}

    def load_state(self, state):
        super().load_state(state)
        self.count = state["count"].clone()


@pytest.fixture
def ema_method(monkeypatch):
    monkeypatch.setitem(methods.METHODS, EMATeacherFF.name, EMATeacherFF)
    return EMATeacherFF.name


def test_after_step_sees_every_global_step_and_teachers_are_frozen_submodules(tmp_path, ema_method):
    """The hook runs once per step, numbered across epochs; a bound teacher is in the block's state but not in its optimizer."""
    trainer = Trainer(tiny_config("ff-bench", tmp_path, f"method.name={ema_method}", "model.hidden=[32,32]"), tiny_splits(tmp_path))
    block = trainer.net.blocks[0]
    initial = copy.deepcopy(block.objective.teacher.state_dict())
    trainer.train_epoch()
    trainer.train_epoch()
    total = 2 * len(trainer.batcher)
    assert trainer.method.seen == [(step, total) for step in range(total)]
    assert any(key.startswith("objective.teacher.") for key in block.state_dict())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in block.trainable_parameters()}
    assert not any(id(p) in optimized or p.requires_grad for p in block.objective.teacher.parameters())
    for name, value in block.objective.teacher.state_dict().items():  # moved towards the student, not onto it
        if value.is_floating_point() and "weight" in name:
            assert not torch.equal(value, initial[name]) and not torch.equal(value, block.layers.state_dict()[name]), name


def test_resume_inside_an_epoch_is_exact_with_teachers_and_per_step_method_state(tmp_path, ema_method):
    data = tiny_splits(tmp_path)
    config = tiny_config("ff-bench", tmp_path, f"method.name={ema_method}", "model.hidden=[32,32]")
    reference = Trainer(config, data)
    reference.train_epoch(), reference.train_epoch()

    first = Trainer(config, data)
    first.train_epoch()
    resumed = stop_and_resume(first, config, data, tmp_path, steps=3)
    assert int(resumed.method.count) == len(first.batcher) + 3
    resumed.train_epoch()
    assert torch.equal(resumed.method.count, reference.method.count)
    for (name, mine), theirs in zip(resumed.net.state_dict().items(), reference.net.state_dict().values()):
        assert torch.equal(mine, theirs), name


class OwnStepFF(FFSupervised):
    """Supervised FF running the engine's step itself (as a recurrent method would run its time steps), counting calls."""

    name = "test-own-step"
    supports_pipeline = False
    supports_data_parallel = False
    poison = False

    def __init__(self, options, data):
        super().__init__(options, data)
        self.calls = 0

    def train_step(self, blocks, optimizers, views, precision):
        self.calls += 1
        metrics, out = train_step(blocks, optimizers, views, precision)
        if self.poison:
            metrics[1]["loss"] = torch.tensor(float("nan"))
        return metrics, out

    def build_layers(self, model_config, image_shape):
        return build_layers("mlp", [16, 16], image_shape, "relu", "rms")


@pytest.fixture
def own_step_method(monkeypatch):
    monkeypatch.setitem(methods.METHODS, OwnStepFF.name, OwnStepFF)
    return OwnStepFF.name


def test_a_method_owned_step_and_layers_replace_the_engines(tmp_path, own_step_method):
    trainer = Trainer(tiny_config("ff-bench", tmp_path, f"method.name={own_step_method}"), tiny_splits(tmp_path))
    assert [block.out_features for block in trainer.net.blocks] == [16, 16]  # its layers, not model.hidden's
    record = trainer.train_epoch()
    assert trainer.method.calls == len(trainer.batcher)
    assert set(record["blocks"]["layer1"]) >= {"loss", "g_pos", "g_neg"}


def test_the_engine_checks_a_method_owned_step_for_divergence(tmp_path, own_step_method, monkeypatch):
    monkeypatch.setattr(OwnStepFF, "poison", True)
    trainer = Trainer(tiny_config("ff-bench", tmp_path, f"method.name={own_step_method}"), tiny_splits(tmp_path))
    with pytest.raises(Divergence, match=r"the loss of block 'layer2' is nan at epoch 1, step 1"):
        trainer.train_epoch()


@pytest.mark.parametrize("overrides, dist, message", [
    (["distributed.devices=[cpu,cpu]"], None, "cannot run as a pipeline"),
    (["distributed.mode=pipeline"], DistContext(0, 2, "pipeline"), "cannot run as a pipeline"),
    ([], DistContext(0, 2, "data"), "cannot train data parallel"),
])
def test_modes_a_method_does_not_support_are_refused(tmp_path, own_step_method, overrides, dist, message):
    config = tiny_config("ff-bench", tmp_path, f"method.name={own_step_method}", *overrides)
    with pytest.raises(UsageError, match=message):
        Trainer(config, tiny_splits(tmp_path), dist=dist)


def test_method_properties_replace_option_checks(tmp_path):
    """What run.py and report.py ask of a method: is its accuracy the readout's, its goodness, hybrid negatives."""
    data = tiny_splits(tmp_path)

    def method(preset, *overrides):
        return Trainer(tiny_config(preset, tmp_path, *overrides), data).method

    assert (method("ff-bench").uses_readout, method("ff-bench", "method.classifier=readout").uses_readout) == (False, True)
    assert method("ff-bench", "method.goodness=mean").goodness_kind == "mean" and method("backprop-mlp").goodness_kind is None
    assert method("ff-unsupervised-small").negatives == "hybrid" and method("ff-unsupervised-small").uses_readout
    assert method("ff-unsupervised-small", "method.negatives=self-contrastive").negatives is None
    assert method("ff-bench").negatives is None


def test_freeze_turns_off_every_gradient():
    module = freeze(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)))
    assert not any(p.requires_grad for p in module.parameters())
    x = torch.randn(4, 3, requires_grad=True)
    module(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in module.parameters())


def test_ema_update_moves_each_parameter_by_its_momentum():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.75)
    for t, t0, s in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(t.detach(), 0.75 * t0 + 0.25 * s.detach())
    with pytest.raises(ValueError, match="copy of the student"):
        ema_update(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)), student, 0.5)


def test_momentum_schedule_rises_from_base_to_one_on_a_half_cosine():
    assert momentum_schedule(0.996, 0, 100) == pytest.approx(0.996)
    assert momentum_schedule(0.996, 50, 100) == pytest.approx(0.998)
    assert momentum_schedule(0.996, 100, 100) == pytest.approx(1.0)
    assert momentum_schedule(0.996, 150, 100) == pytest.approx(1.0)
