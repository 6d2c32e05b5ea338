"""Recurrent Forward-Forward: the damped top-down net, locality over layers and time, batched classification, learning, resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_config, tiny_splits
from locallearn.checkpoint import load_checkpoint, save_checkpoint
from locallearn.config import ModelConfig, load_config
from locallearn.engine import Trainer
from locallearn.errors import UsageError
from locallearn.evaluate import classify
from locallearn.methods.base import DataInfo
from locallearn.methods.ff_recurrent import FFRecurrent, FFRecurrentOptions
from locallearn.nn.layers import InputNorm
from locallearn.nn.network import Block, LocalNet
from locallearn.nn.recurrent import RecurrentLayer, initial_states, time_step
from locallearn.objectives.goodness import goodness

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread beats two contended ones

INFO = DataInfo(num_classes=4, image_shape=(1, 6, 6), pixel_low=-1.0, pixel_high=1.0)


def small_net(seed: int = 0, hidden=(16, 12, 8), **options) -> tuple[FFRecurrent, LocalNet]:
    """A recurrent FF method and its net over 6x6 images and 4 classes, built as the engine builds them."""
    torch.manual_seed(seed)
    method = FFRecurrent(FFRecurrentOptions(**options), INFO)
    layers = method.build_layers(ModelConfig(hidden=list(hidden)), INFO.image_shape)
    blocks = [Block(f"layer{i + 1}", [layer], method.objective(i, len(layers), layer.out_features)) for i, layer in enumerate(layers)]
    return method, LocalNet(blocks)


def batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *INFO.image_shape, generator=g), torch.randint(0, INFO.num_classes, (n,), generator=g)


def test_a_layer_is_driven_by_its_normalised_neighbours_and_damped_towards_its_previous_state():
    torch.manual_seed(0)
    layer = RecurrentLayer(below=5, above=3, width=4, damping=0.3)
    below, above, previous = torch.randn(2, 5), torch.randn(2, 3), torch.rand(2, 4)
    norm = InputNorm("rms")
    computed = torch.relu(norm(below) @ layer.bottom_up.weight.T + layer.bottom_up.bias + norm(above) @ layer.top_down.weight.T)
    torch.testing.assert_close(layer((below, above, previous)), 0.3 * previous + 0.7 * computed)
    torch.testing.assert_close(layer((below, None, None)), torch.relu(layer.bottom_up(norm(below))))  # the bottom-up first pass
    torch.testing.assert_close(layer((3 * below, 5 * above, previous)), layer((below, above, previous)))  # only the neighbours' directions count


def test_the_image_is_below_the_first_layer_and_the_label_above_the_last():
    _, net = small_net()
    shapes = [(b.layers[0].bottom_up.in_features, b.layers[0].top_down.in_features, b.out_features) for b in net.blocks]
    assert shapes == [(36, 12, 16), (16, 8, 12), (12, 4, 8)]


def local_gradients(method: FFRecurrent, net: LocalNet, views) -> list[list[torch.Tensor]]:
    """Each layer's gradient, summed over the time steps, of its loss at each step alone, with every input it reads a fresh leaf.

    States are replayed without grad; at step t layer l's loss is differentiated with respect to all
    parameters of the net and to its inputs: it must reach its own layer's weights only.
    """
    image, steps = views.inputs.flatten(1), method.options.iterations
    params = list(net.parameters())
    own = [{id(p) for p in block.parameters()} for block in net.blocks]
    totals = [[torch.zeros_like(p) for p in block.parameters()] for block in net.blocks]
    with torch.no_grad():
        states = initial_states(net.blocks, image)
    for _ in range(steps):
        below, above = [image, *states[:-1]], [*states[1:], views.top]
        for l, block in enumerate(net.blocks):
            _, loss, _ = block((below[l], above[l], states[l]), views)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            assert all(g is None for p, g in zip(params, grads) if id(p) not in own[l])  # no gradient reaches another layer
            for total, g in zip(totals[l], [g for p, g in zip(params, grads) if id(p) in own[l]]):
                total += g / steps
        with torch.no_grad():
            states = time_step(net.blocks, states, image, views.top)
    return totals


def test_each_update_is_the_sum_of_every_layers_own_loss_at_every_step_with_no_gradient_through_time():
    """The method's step accumulates exactly the per-layer, per-step local gradients: none across layers or back in time."""
    method, net = small_net(iterations=4, scored_iterations=[2, 3])
    x, y = batch()
    views = method.make_views(x, y, torch.arange(6), torch.Generator().manual_seed(0))
    expected = local_gradients(method, net, views)
    frozen = [torch.optim.SGD(block.parameters(), lr=0.0) for block in net.blocks]  # keeps the gradients for us to read
    metrics, output = method.train_step(list(net.blocks), frozen, views)
    for block, grads in zip(net.blocks, expected):
        for p, g in zip(block.parameters(), grads):
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    assert not output.requires_grad and [set(m) for m in metrics] == [{"ff_loss", "g_pos", "g_neg", "loss"}] * 3

    # the comparison would catch a gradient through time: layer 1's loss at step 2 reaching back through its state at step 1
    image, weight = views.inputs.flatten(1), net.blocks[0].layers[0].bottom_up.weight
    with torch.no_grad():
        states = initial_states(net.blocks, image)
    first = net.blocks[0]((image, states[1], states[0]))
    leaky = net.blocks[0]((image, states[1], first), views)[1]
    local = net.blocks[0]((image, states[1], first.detach()), views)[1]
    assert not torch.allclose(torch.autograd.grad(leaky, weight)[0], torch.autograd.grad(local, weight)[0])


def test_the_batched_classification_equals_running_each_label_alone_for_all_iterations():
    method, net = small_net(iterations=8)
    with torch.no_grad():  # a strong top-down input, so that the label visibly changes every layer's goodness
        for layer in net.blocks:
            layer.layers[0].top_down.weight.mul_(5)
    x, _ = batch(5)
    batched = method.goodness_per_label(net, x)
    image = x.flatten(1)
    for label in range(INFO.num_classes):
        top = F.one_hot(torch.full((5,), label), INFO.num_classes).float()
        with torch.no_grad():
            states, kept = initial_states(net.blocks, image), []
            for t in range(1, 9):  # the paper's 8 iterations; steps 3-5 are scored
                states = time_step(net.blocks, states, image, top)
                if t in (3, 4, 5):
                    kept.append([goodness(s) for s in states])
        for l, per_layer in enumerate(batched):
            torch.testing.assert_close(per_layer[:, label], torch.stack([k[l] for k in kept]).mean(0))
    scores = method.predict(net, x)
    assert torch.equal(scores["goodness"], sum(batched)) and scores["goodness"].shape == (5, INFO.num_classes)
    assert len({tuple(s.tolist()) for s in batched[-1].T}) == INFO.num_classes  # the label changes the top layer's goodness


def test_a_tiny_recurrent_net_learns_and_its_first_layer_hears_the_label_from_above(tmp_path):
    """On the synthetic bars, goodness classification goes far above chance (10%); layer 1, which reads the
    label only through the layer above it, classifies too: the top-down path carries the label down."""
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-recurrent-small", tmp_path, "model.hidden=[64,64]", "optim.lr=0.01", "train.epochs=4"), data)
    before = classify(trainer.method, trainer.net, data.val_x, data.val_y, 200)
    for _ in range(4):
        trainer.train_epoch()
    after = classify(trainer.method, trainer.net, data.val_x, data.val_y, 200)
    assert after["goodness"] >= 0.8 and after["goodness"] > before["goodness"] + 0.3, (before, after)
    assert after["layer1"] >= 0.5, after
    features = trainer.method.features(trainer.net, data.val_x[:5])  # probes read each layer with a neutral label on top
    assert [tuple(f.shape) for f in features] == [(5, 64), (5, 64)]


def without_times(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("epoch_seconds", "samples_per_second")}


def test_stop_inside_an_epoch_and_resume_is_exact(tmp_path):
    """Hard negatives (the method's state, from its own classifier) and the optimizers' state survive a mid-epoch checkpoint bit for bit."""
    data = tiny_splits(tmp_path)
    config = tiny_config("ff-recurrent-small", tmp_path, "model.hidden=[32,32]", "method.negatives=hard", "method.iterations=3", "train.epochs=2")
    reference = Trainer(config, data)
    expected = [without_times(reference.train_epoch()) for _ in range(2)]
    first = Trainer(config, data)
    records = [first.train_epoch()]
    assert not (first.method.hard_labels[:, 0] == data.train_y).any()

    def stop_at_step_3(step, total, sums):
        first.stop_requested = step >= 3

    assert first.train_epoch(progress=stop_at_step_3) is None
    save_checkpoint(tmp_path, first, {})
    resumed = Trainer(config, data)
    load_checkpoint(tmp_path, resumed)
    assert resumed.partial.step == 3 and torch.equal(resumed.method.hard_labels, first.method.hard_labels)
    records.append(resumed.train_epoch())
    assert [without_times(r) for r in records] == expected
    for (name, mine), theirs in zip(resumed.net.state_dict().items(), reference.net.state_dict().values()):
        assert torch.equal(mine, theirs), name


@pytest.mark.parametrize("override, message", [
    ("distributed.devices=[cpu,cpu]", "cannot run as a pipeline"),
    ("train.granularity=block:1", "use train.granularity=layer"),
    ("model.arch=conv", "use model.arch=mlp"),
    ("model.dropout=0.1", "has no dropout"),
    ("method.scored_iterations=[3,9]", "reaches past the 4 iterations"),
    ("method.scored_iterations=[3,3]", "increasing"),
])
def test_what_the_recurrent_net_cannot_do_is_refused_in_one_line(tmp_path, override, message):
    data = tiny_splits(tmp_path)
    with pytest.raises(UsageError, match=message) as err:
        Trainer(tiny_config("ff-recurrent-small", tmp_path, override), data)
    assert "\n" not in str(err.value)
