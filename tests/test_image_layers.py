"""Image layers: locally connected and convolutional FF layers, per-position norms, backbones, grouped goodness."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import random_images
from locallearn.config import load_config
from locallearn.errors import UsageError
from locallearn.nn.backbones import build_backbone
from locallearn.nn.layers import InputNorm
from locallearn.nn.local import LocallyConnected2d
from locallearn.objectives.classification import LocalClassifierLoss
from locallearn.objectives.goodness import FFGoodnessLoss, grouped_goodness
from locallearn.views.base import Views


def model_config(*overrides: str):
    return load_config("ff-bench", list(overrides)).model


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (10, 6, 0), (4, 2, 1), (2, 1, 0)])
def test_locally_connected_with_tied_weights_is_a_convolution(kernel, stride, padding):
    x = random_images(4, shape=(3, 12, 12))
    layer = LocallyConnected2d(3, 5, (12, 12), kernel, stride, padding)
    conv_weight, conv_bias = torch.randn(5, 3, kernel, kernel), torch.randn(5)
    with torch.no_grad():
        layer.weight.copy_(conv_weight.flatten(1).T.expand_as(layer.weight))
        layer.bias.copy_(conv_bias.expand_as(layer.bias))
    expected = F.conv2d(x, conv_weight, conv_bias, stride=stride, padding=padding)
    assert layer.out_size == tuple(expected.shape[2:])
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_locally_connected_units_see_only_their_window_and_share_nothing():
    layer = LocallyConnected2d(2, 3, (10, 10), kernel_size=4, stride=3)  # a 3x3 grid of positions
    x = random_images(2, shape=(2, 10, 10)).requires_grad_()
    layer(x)[:, :, 1, 2].sum().backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    window = torch.zeros(10, 10, dtype=torch.bool)
    window[3:7, 6:10] = True
    assert torch.equal(seen, window)
    touched = layer.weight.grad.abs().sum(dim=(1, 2)) > 0
    assert touched.tolist() == [i == 1 * 3 + 2 for i in range(9)]  # only that position's filters get a gradient


def test_locally_connected_receptive_fields_are_the_weights_in_place():
    layer = LocallyConnected2d(1, 2, (10, 10), kernel_size=4, stride=3)
    fields = layer.receptive_fields()
    assert fields.shape == (9 * 2, 1, 10, 10)
    x = random_images(3, shape=(1, 10, 10))
    response = (x.flatten(1) @ fields.flatten(1).T).view(3, 9, 2).permute(0, 2, 1) + layer.bias.detach().squeeze(1).T
    torch.testing.assert_close(response.reshape(3, 2, 3, 3), layer(x).detach(), atol=1e-5, rtol=1e-5)


def test_conv_layer_sees_only_its_window():
    layers = build_backbone(model_config("model.arch=conv", "model.channels=[4]", "model.kernel_size=3", "model.padding=1", "model.input_norm=none", "model.activation=tanh"), (1, 9, 9))  # tanh: no dead unit hides the window
    x = random_images(1, shape=(1, 9, 9)).requires_grad_()
    layers[0](x)[0, :, 4, 4].sum().backward()
    seen = x.grad[0, 0].abs() > 0
    assert seen[3:6, 3:6].all() and seen.sum() == 9


def test_grouped_conv_keeps_each_group_of_channels_apart():
    """CwComp's CFSE layers: with one group per class, output group k reads only input group k."""
    torch.manual_seed(0)
    first, second = build_backbone(model_config("model.arch=conv", "model.channels=[4,6]", "model.groups=[1,2]", "model.input_norm=none"), (1, 5, 5))
    assert second[1].weight.shape == (6, 2, 3, 3)
    h = first(random_images(2, shape=(1, 5, 5)))
    changed = h.clone()
    changed[:, 2:] += 1.0  # the second input group
    moved = (second(changed) - second(h)).abs().amax(dim=(0, 2, 3))
    assert (moved[:3] == 0).all() and (moved[3:] > 0).any()


@pytest.mark.parametrize(
    "overrides, message",
    [(["model.channels=[4,6]", "model.groups=[1,4]"], "layer 2 has 4 input and 6 output channels, which 4 groups must both divide"),
     (["model.arch=locally-connected", "model.channels=[4,6]", "model.groups=2"], "model.arch=locally-connected has none")],
)
def test_groups_that_do_not_fit_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        build_backbone(model_config("model.arch=conv", *overrides), (1, 8, 8))


@pytest.mark.parametrize(
    "arch, batch_norm, dims",
    [(["model.arch=conv", "model.channels=[5]", "model.input_norm=none"], torch.nn.BatchNorm2d, (0, 2, 3)),
     (["model.arch=mlp", "model.hidden=[5]"], torch.nn.BatchNorm1d, (0,))],
)
def test_batch_norm_after_the_activation_normalises_each_unit_over_the_batch(arch, batch_norm, dims):
    torch.manual_seed(0)
    (layer,) = build_backbone(model_config(*arch, "model.out_norm=batch"), (1, 6, 6))
    assert isinstance(layer[-1], batch_norm) and isinstance(layer[-2], torch.nn.ReLU)
    out = layer(random_images(64, shape=(1, 6, 6)) * 3 + 1)
    torch.testing.assert_close(out.mean(dim=dims), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=dims, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)


@pytest.mark.parametrize("arch", ["vgg", "resnet18"])
def test_out_norm_on_a_backbone_with_batch_norm_of_its_own_is_refused(arch):
    with pytest.raises(UsageError, match=f"model.out_norm applies to mlp, conv and locally-connected layers, not model.arch={arch}"):
        build_backbone(model_config(f"model.arch={arch}", "model.channels=[4]", "model.out_norm=batch"), (1, 8, 8))


def test_per_position_norm_gives_every_position_unit_rms_over_channels():
    x = random_images(2, shape=(6, 5, 5)) * torch.arange(1, 26.0).view(1, 1, 5, 5)
    out = InputNorm("rms", per_position=True)(x)
    torch.testing.assert_close(out.square().mean(dim=1), torch.ones(2, 5, 5))
    whole = InputNorm("rms")(x)
    torch.testing.assert_close(whole.square().mean(dim=(1, 2, 3)), torch.ones(2))
    assert whole.square().mean(dim=1).std() > 0.5  # an example-wide norm keeps each position's share


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_conv_backbone_pools_between_layers(shape):
    model = model_config("model.arch=conv", "model.channels=[8,16,16]", "model.pool=[1,2,2]", "model.norm_over=position")
    layers = build_backbone(model, shape)
    h = random_images(2, shape=shape)
    sizes = []
    for layer in layers:
        h = layer(h)
        sizes.append(tuple(h.shape[1:]))
    side = shape[1]
    assert sizes == [(8, side, side), (16, side // 2, side // 2), (16, side // 4, side // 4)]
    assert [layer.out_features for layer in layers] == [8, 16, 16]
    norms = [next(m for m in layer if isinstance(m, InputNorm)) for layer in layers]
    assert [n.per_position for n in norms] == [False, True, True]  # the image itself is normalised whole


def test_hintons_locally_connected_backbone():
    model = model_config("model.arch=locally-connected", "model.channels=[128,220,512]", "model.kernel_size=[10,2,2]", "model.stride=[6,1,1]", "model.padding=0")
    h = random_images(2, shape=(1, 28, 28))
    shapes = []
    for layer in build_backbone(model, (1, 28, 28)):
        h = layer(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(128, 4, 4), (220, 3, 3), (512, 2, 2)]  # ~2000 units per layer, as in the paper


def test_mlp_backbone_flattens_only_the_first_layer():
    layers = build_backbone(model_config("model.hidden=[7,5]"), (1, 4, 4))
    assert isinstance(layers[0][0], torch.nn.Flatten) and not isinstance(layers[1][0], torch.nn.Flatten)
    assert layers[1](layers[0](random_images(3, shape=(1, 4, 4)))).shape == (3, 5)


def test_a_backbone_that_runs_out_of_positions_is_a_usage_error():
    with pytest.raises(UsageError, match="layer 3"):
        build_backbone(model_config("model.arch=conv", "model.padding=0", "model.kernel_size=5", "model.pool=[1,2,2]"), (1, 16, 16))


@pytest.mark.parametrize(
    "override, message",
    [("model.kernel_size=[3,3]", "one value per layer"), ("model.stride=0", "at least 1"), ("model.padding=-1", "at least 0"), ("model.pool=1.5", "an integer"), ("model.groups=0", "at least 1"),
     ("model.out_norm=layer", "model.out_norm"), ("model.arch=resnet", "model.arch")],
)
def test_image_layer_keys_are_checked(override, message):
    with pytest.raises(UsageError, match=message):
        load_config("ff-bench", [override])


def test_single_numbers_apply_to_every_layer():
    model = model_config("model.channels=[4,4,4,4]", "model.kernel_size=5", "model.pool=[1,2,1,2]")
    assert model.kernel_size == [5, 5, 5, 5] and model.stride == [1, 1, 1, 1] and model.pool == [1, 2, 1, 2]


def test_goodness_per_example_position_and_channel_group():
    activity = torch.arange(2 * 4 * 3, dtype=torch.float).view(2, 4, 3, 1)  # 4 channels, 3 positions
    squares = activity.square()
    assert torch.equal(grouped_goodness(activity), squares.sum(dim=(1, 2, 3)).unsqueeze(1))
    assert torch.equal(grouped_goodness(activity, over="position"), squares.sum(dim=1).flatten(1))
    assert torch.equal(grouped_goodness(activity, groups=2), torch.stack([squares[:, :2].sum(dim=(1, 2, 3)), squares[:, 2:].sum(dim=(1, 2, 3))], dim=1))
    per_position_group = grouped_goodness(activity, "mean", "position", 2)
    assert per_position_group.shape == (2, 6)
    torch.testing.assert_close(per_position_group[:, 3:], squares[:, 2:].mean(dim=1).flatten(1))


def test_each_position_is_an_example_of_the_loss():
    """Positives good at one position and bad at another: an example-wide goodness hides it, per position it costs."""
    objective_example = FFGoodnessLoss(width=2, threshold=1.0)
    objective_position = FFGoodnessLoss(width=2, threshold=1.0, over="position")
    views = Views(inputs=torch.zeros(2), num_positive=1)
    positive = torch.tensor([[[3.0, 0.0], [0.0, 0.0]]])  # (1, 2 channels, 2 positions): all goodness at position 0
    out = torch.cat([positive, torch.zeros(1, 2, 2)])
    assert objective_position(out, views)[0] > objective_example(out, views)[0] + 0.1


def test_default_threshold_is_the_number_of_units_per_goodness():
    views = Views(inputs=torch.zeros(2), num_positive=1)
    out = torch.ones(2, 8, 3, 3)
    for over, groups, units in [("example", 1, 72), ("position", 1, 8), ("example", 4, 18), ("position", 2, 4)]:
        objective = FFGoodnessLoss(width=8, over=over, groups=groups)
        loss, metrics = objective(out, views)
        assert metrics["g_pos"] == units and loss == pytest.approx(float(F.softplus(torch.tensor(0.0))))


def test_goodness_groups_must_divide_the_width():
    with pytest.raises(UsageError, match="divide"):
        FFGoodnessLoss(width=10, groups=3)


def test_a_local_classifier_on_a_spatial_output_averages_positions():
    objective = LocalClassifierLoss(in_features=4, num_classes=3)
    out = random_images(5, shape=(4, 6, 6))
    torch.testing.assert_close(objective.score(out), objective.head(out.mean(dim=(2, 3))))


def test_peer_normalisation_of_image_layers_evens_out_channels():
    views = Views(inputs=torch.zeros(2), num_positive=2)
    objective = FFGoodnessLoss(width=3, peer_weight=1.0, peer_momentum=0.0)
    even = torch.ones(2, 3, 4, 4)
    uneven = even * torch.tensor([0.0, 1.0, 5.0]).view(1, 3, 1, 1)
    assert objective(even, views)[1]["peer_loss"] == 0
    assert objective(uneven, views)[1]["peer_loss"] > 1
    assert objective.running_mean.tolist() == [0.0, 1.0, 5.0]  # one running mean per channel


def test_a_pooled_mlp_head_reads_each_quadrant():
    """pool=2: the head sees the mean of each quarter of the map (channel-major), through one hidden ReLU layer."""
    objective = LocalClassifierLoss(in_features=4, num_classes=3, pool=2, hidden=[8])
    out = random_images(5, shape=(4, 6, 6))
    quadrants = out.reshape(5, 4, 2, 3, 2, 3).mean(dim=(3, 5)).flatten(1)
    first, _, last = objective.head
    torch.testing.assert_close(objective.score(out), last(torch.relu(first(quadrants))))
