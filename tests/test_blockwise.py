"""Block-wise SSL and greedy supervised training on VGG/ResNet backbones: shapes, locality at every
granularity, end-to-end == plain backprop, noise injection, presets, and learning on tiny data."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_resume_is_exact, gradient_leaks, prototype_splits
from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer
from locallearn.evaluate import fit_linear_probe, linear_probes
from locallearn.nn.noise import ActivityNoise
from locallearn.nn.network import group_layers
from locallearn.nn.resnet import Residual, resnet_units
from locallearn.objectives.ssl import barlow_twins_terms
from locallearn.views.augment import two_views

TINY_VGG = ["model.channels=[4,8,8]", "model.pool=[1,2,1]"]


def config(preset: str, *overrides: str):
    """`preset` shrunk for 12x12 images: batches of 16, a 16-16 projector, one epoch."""
    small = ["data.batch_size=16", "train.epochs=1", "logging.progress=false", "eval.probe_epochs=2"]
    if load_config(preset).method.name == "blockwise-ssl":
        small.append("method.projector=[16,16]")
    return load_config(preset, [*small, *overrides])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> DataSplits:
    return prototype_splits(n_train=48, n_test=32, size=12)


def first_views(trainer):
    x, y, index = next(iter(trainer.batcher.batches(0)))
    return trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))


def test_resnet_stage_blocks_have_the_paper_widths_and_resolutions():
    x = torch.randn(2, 3, 32, 32)
    stages = [nn.Sequential(*group) for group in group_layers(resnet_units("resnet50", 3, width=2, imagenet_stem=True), "block:4")]
    shapes = []
    for stage in stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(8, 8, 8), (16, 4, 4), (32, 2, 2), (64, 1, 1)]  # the stem divides by 4, each later stage by 2
    assert [sum(isinstance(m[0], Residual) for m in s) for s in stages] == [3, 4, 6, 3]
    small = resnet_units("resnet18", 1, width=4, imagenet_stem=False)
    x = torch.randn(2, 1, 28, 28)
    for layer in small:
        x = layer(x)
    assert tuple(x.shape) == (2, 32, 4, 4)
    assert [sum(isinstance(m[0], Residual) for m in s) for s in group_layers(small, "block:4")] == [2, 2, 2, 2]


def test_residual_branches_start_at_zero():
    """Zero-init residual: at initialisation a block with an identity shortcut passes non-negative inputs through."""
    block = resnet_units("resnet18", 1, width=4, imagenet_stem=False)[2][0]
    assert isinstance(block, Residual) and isinstance(block.shortcut, torch.nn.Identity)
    x = torch.rand(2, 4, 6, 6)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("granularity, sizes", [("layer", [1] * 9), ("block:4", [3, 2, 2, 2]), ("block:2", [5, 4]), ("end-to-end", [9])])
def test_a_resnet_splits_into_its_units_or_stages(data, granularity, sizes):
    trainer = Trainer(config("blockwise-barlow", "model.arch=resnet18", "model.width=4", f"train.granularity={granularity}"), data)
    assert [len(b.layers) for b in trainer.net.blocks] == sizes
    assert trainer.net.blocks[-1].out_features == 32


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("blockwise-barlow", [*TINY_VGG, "train.granularity=layer"]),
        ("blockwise-barlow", [*TINY_VGG, "train.granularity=block:2"]),
        ("blockwise-barlow", [*TINY_VGG, "train.granularity=end-to-end"]),
        ("blockwise-vicreg", [*TINY_VGG, "train.granularity=layer", "model.activity_noise=0.25"]),
        ("blockwise-simclr", [*TINY_VGG, "train.granularity=block:2"]),
        ("blockwise-barlow", ["model.arch=resnet18", "model.width=4", "train.granularity=layer", "method.expand=8"]),
        ("blockwise-barlow", ["model.arch=resnet18", "model.width=4", "train.granularity=block:2"]),
        ("blockwise-barlow", ["model.arch=resnet50", "model.width=1", "train.granularity=block:4", "model.activity_noise=0.25"]),
        ("greedy-supervised", [*TINY_VGG, "train.granularity=layer"]),
        ("greedy-supervised", ["model.arch=resnet18", "model.width=4", "train.granularity=block:2"]),
        ("e2e-supervised", [*TINY_VGG]),
    ],
)
def test_no_loss_reaches_a_parameter_outside_its_block(data, preset, overrides):
    trainer = Trainer(config(preset, *overrides), data)
    assert gradient_leaks(trainer, first_views(trainer)) == []


def test_the_locality_check_sees_a_leak_through_a_conv_backbone(data):
    trainer = Trainer(config("blockwise-barlow", *TINY_VGG, "train.granularity=layer"), data)
    views = first_views(trainer)
    first, second = trainer.net.blocks[0], trainer.net.blocks[1]
    second.objective(second(first(views.inputs)), views)[0].backward()  # no cut in between
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())


def sgd(preset: str, *overrides: str):
    return config(preset, *TINY_VGG, "optim.name=sgd", "optim.lr=0.05", "optim.schedule=constant", "optim.weight_decay=0", *overrides)


def assert_same_weights(block, reference) -> None:
    for (name, mine), theirs in zip(block.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_end_to_end_cross_entropy_on_a_cnn_is_plain_backprop(data):
    trainer = Trainer(sgd("e2e-supervised", "method.augment=null"), data)  # the reference loop sees the images as they are
    assert len(trainer.net.blocks) == 1
    reference = copy.deepcopy(trainer.net.blocks[0])
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    for x, y, _ in trainer.batcher.batches(0):
        loss = F.cross_entropy(reference.objective.head(F.adaptive_avg_pool2d(reference.layers(x), 2).flatten(1)), y)  # the preset's 2x2-pool head
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trainer.train_epoch()
    assert_same_weights(trainer.net.blocks[0], reference)


def test_end_to_end_barlow_twins_is_plain_backprop_of_the_loss(data):
    trainer = Trainer(sgd("e2e-barlow"), data)
    reference = copy.deepcopy(trainer.net.blocks[0])
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    lambd = trainer.config.method.lambd
    for step, (x, _, _) in enumerate(trainer.batcher.batches(0)):
        v1, v2 = two_views(x, trainer.method.options.augment, data.pixel_low, data.pixel_high, trainer.step_generator(step))
        z = reference.objective.head(reference.layers(torch.cat([v1, v2])))
        on, off = barlow_twins_terms(z[: x.shape[0]], z[x.shape[0] :])
        optimizer.zero_grad()
        (on + lambd * off).backward()
        optimizer.step()
    trainer.train_epoch()
    assert_same_weights(trainer.net.blocks[0], reference)


def test_blockwise_and_end_to_end_presets_differ_only_in_the_cut():
    for blockwise, e2e in [("blockwise-barlow", "e2e-barlow"), ("blockwise-vicreg", "e2e-vicreg"), ("blockwise-simclr", "e2e-simclr"), ("greedy-supervised", "e2e-supervised"),
                           ("greedy-supervised-deep", "e2e-supervised-deep")]:
        a, b = load_config(blockwise).to_dict(), load_config(e2e).to_dict()
        for tree in (a, b):
            tree.pop("description"), tree.pop("summary")
        assert b["train"].pop("granularity") == "end-to-end"
        a["train"].pop("granularity")
        assert a == b, (blockwise, e2e)


def test_the_deep_greedy_preset_doubles_each_convolution_of_the_greedy_one():
    shallow, deep = load_config("greedy-supervised").to_dict(), load_config("greedy-supervised-deep").to_dict()
    for key in ("channels", "kernel_size", "stride", "padding", "groups"):
        assert deep["model"].pop(key) == [v for v in shallow["model"].pop(key) for _ in range(2)], key
    assert deep["model"].pop("pool") == [p for p in shallow["model"].pop("pool") for p in (p, 1)]  # the second of each pair keeps its size
    for name in ("model", "method", "train", "optim", "data"):
        assert deep[name] == shallow[name], name


def test_activity_noise_is_scaled_reproducible_and_off_in_eval():
    torch.manual_seed(0)
    noise = ActivityNoise(0.25)
    x = 3 * torch.randn(64, 8, 5, 5)
    first, second = noise(x), noise(x)
    assert not torch.equal(first, second)
    assert float((first - x).std()) == pytest.approx(0.25 * float(x.std()), rel=0.05)
    replay = ActivityNoise(0.25)
    replay.load_state_dict(copy.deepcopy(noise.state_dict()))
    assert torch.equal(replay(x), noise(x))  # the stream is in the state dict: a resumed run draws the same noise
    assert torch.equal(noise.eval()(x), x)


def test_stop_inside_an_epoch_and_resume_is_exact_with_views_and_noise(tmp_path, data):
    """Augmented views come from the epoch generator and the noise stream from the weights: a resumed run is bit-exact."""
    run = config("blockwise-vicreg", *TINY_VGG, "train.granularity=block:2", "model.activity_noise=0.25", "train.epochs=2")
    assert_resume_is_exact(run, data, tmp_path)


@pytest.mark.parametrize("probe_pool, positions", [(1, 1), (2, 4)])
def test_features_are_each_block_pooled_to_a_grid_of_positions(data, probe_pool, positions):
    trainer = Trainer(config("blockwise-barlow", *TINY_VGG, "train.granularity=layer", f"method.probe_pool={probe_pool}"), data)
    features = trainer.method.features(trainer.net, data.test_x[:5])
    assert [tuple(f.shape) for f in features] == [(5, 4 * positions), (5, 8 * positions), (5, 8 * positions)]
    assert trainer.method.predict(trainer.net, data.test_x[:5]) == {}
    assert trainer.method.readout_blocks(3) == [2]


def test_imagenet_recipe_builds_and_trains_on_tiny_inputs():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 64, 64, generator=g), torch.randint(0, 10, (8,), generator=g)
    images = DataSplits(x, y, x[:0], y[:0], x[:2], y[:2], 10, (3, 64, 64), 0.0, 1.0, -2.0, 2.0)
    recipe = load_config("blockwise-barlow-imagenet", ["data.batch_size=4", "model.width=2", "method.expand=16", "method.projector=[32,32,32]"])
    trainer = Trainer(recipe, images)
    assert [b.out_features for b in trainer.net.blocks] == [8, 16, 32, 64]
    before = copy.deepcopy(trainer.net.state_dict())
    record = trainer.train_epoch()  # two steps
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in record["blocks"].values())
    changed = {k.split(".")[1] for k, v in trainer.net.state_dict().items() if ".layers." in k and not torch.equal(v, before[k])}
    assert changed == {"0", "1", "2", "3"}  # every stage learned


def test_a_tiny_blockwise_ssl_run_beats_random_weights():
    """Views that differ only in pixel noise: the blocks learn to see through it, so the last block's probe improves."""
    torch.manual_seed(0)
    noisy = prototype_splits(n_train=600, n_test=300, size=12, noise=3.0)
    run = config(
        "blockwise-barlow", "model.channels=[16,16]", "model.pool=[1,2]", "train.granularity=layer", "train.epochs=6",
        "data.batch_size=100", "optim.lr=0.003", "method.projector=[64,64]", "method.probe_pool=2",
        "method.augment={crop_scale: 1.0, crop_ratio: 1.0, flip: 0.0, jitter: 0.0, noise: 0.5}",
    )
    trainer = Trainer(run, noisy)

    def last_probe() -> float:
        return linear_probes(trainer.method, trainer.net, noisy, [1], epochs=10, lr=1e-2, seed=0, batch_size=300)["layer2"]["test"]

    random_weights = last_probe()
    for _ in range(run.train.epochs):
        trainer.train_epoch()
    assert last_probe() > random_weights + 0.04  # seeds 0-3 here: +0.06 to +0.12


def test_probe_flip_trains_the_probes_on_mirrored_images_with_their_labels_too():
    """The class is the side of a bright bar, which a mirror swaps: mirrored training images contradict the rest, so a
    flip-trained probe must fall to chance while the plain one reads the side easily (and val/test stay unmirrored)."""
    from locallearn.evaluate import evaluate_final

    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (n,), generator=generator)
        x = 0.3 * torch.randn(n, 1, 12, 12, generator=generator)
        x[torch.arange(n), 0, :, 1 + 9 * y] += 2.0  # column 1 for class 0, column 10 for class 1
        return x, y

    sides = DataSplits(*split(400), *split(100), *split(200), 2, (1, 12, 12), 0.0, 1.0, -1.0, 1.0)
    accuracy = {}
    for flip in (False, True):
        run = config("blockwise-vicreg", *TINY_VGG, "train.granularity=layer", "method.probe_pool=2", "eval.knn=false", "eval.probe_epochs=20", f"eval.probe_flip={flip}")
        torch.manual_seed(0)
        results, per_block = evaluate_final(Trainer(run, sides), run)
        accuracy[flip] = per_block[-1]["probe_accuracy"]
    assert accuracy[False] > 0.95 and accuracy[True] < 0.7, accuracy


def test_the_cosine_probe_schedule_settles_at_the_optimum_where_a_constant_rate_keeps_jumping():
    """Overlapping classes at a high rate: the constant rate's last steps leave the probe well off the optimum of its
    (convex) training loss, found here by L-BFGS; decaying the rate to zero ends at it. Same seed, same batches."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=generator)
    x = torch.randn(600, 20, generator=generator) + F.one_hot(y, 20).float()  # class means one std apart
    loss = {}
    for schedule in ("constant", "cosine"):
        probe = fit_linear_probe(x, y, 3, epochs=10, lr=0.3, seed=0, batch_size=32, schedule=schedule)
        with torch.no_grad():
            loss[schedule] = F.cross_entropy(probe(x), y).item()
    standardised = (x - x.mean(0)) / (x.std(0) + 1e-6)
    weight, bias = torch.zeros(20, 3, requires_grad=True), torch.zeros(3, requires_grad=True)
    lbfgs = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        value = F.cross_entropy(standardised @ weight + bias, y)
        value.backward()
        return value

    lbfgs.step(closure)
    optimum = closure().item()
    assert loss["cosine"] < optimum + 0.01 and loss["constant"] > optimum + 0.1, (loss, optimum)  # here 0.754, 1.006, 0.751


def test_probe_weight_decay_settles_at_the_l2_regularised_optimum():
    """With `weight_decay` and a cosine rate the probe ends where the gradient of its loss plus (wd/2)·||W||² (biases
    free) vanishes, with a smaller weight than without: the coupled penalty, not AdamW's decay, which stops elsewhere."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (600,), generator=generator)
    x = torch.randn(600, 20, generator=generator) + 2 * F.one_hot(y, 20).float()
    decay = 0.05
    plain = fit_linear_probe(x, y, 3, epochs=300, lr=0.05, seed=0, batch_size=600, schedule="cosine")
    probe = fit_linear_probe(x, y, 3, epochs=300, lr=0.05, seed=0, batch_size=600, schedule="cosine", weight_decay=decay)
    weight, bias = probe.linear.weight.detach().requires_grad_(), probe.linear.bias.detach().requires_grad_()
    standardised = (x - probe.mean) / probe.std
    objective = F.cross_entropy(standardised @ weight.T + bias, y) + decay / 2 * weight.square().sum()
    objective.backward()
    gradient = torch.cat([weight.grad.flatten(), bias.grad])
    assert gradient.norm() < 1e-3 and weight.norm() < 0.5 * plain.linear.weight.norm(), (gradient.norm(), weight.norm(), plain.linear.weight.norm())
