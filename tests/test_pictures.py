"""Pictures: valid PNGs of hybrid negatives and receptive fields, and plots a reader cannot misread.

Integer ticks on epoch and block axes, accuracy axes at least ten points wide that say where
they start and mark chance and the baseline, no empty panel, label pixels apart from the fields.
"""

from __future__ import annotations

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers import random_images
from locallearn.config import load_config
from locallearn.nn.backbones import build_backbone
from locallearn.pictures import (LABEL_PIXEL_GREY, MIN_ACCURACY_SPAN, Baseline, to_rgb, goodness_figure, learning_curves_figure,
                                 probe_by_depth_figure, receptive_fields, save_hybrid_examples, save_receptive_fields, split_label_pixels)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels[..., :3].std() > 0.05  # something is drawn
    assert not list(path.parent.glob(".*.tmp"))  # written atomically


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_hybrid_examples_png(tmp_path, shape):
    path = save_hybrid_examples(tmp_path / "hybrids.png", random_images(10, shape=shape), torch.Generator().manual_seed(0), count=4)
    assert_png(path)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.hidden=[20,20]"],
        ["model.arch=conv", "model.channels=[6,6]"],
        ["model.arch=locally-connected", "model.channels=[3,4]", "model.kernel_size=[10,2]", "model.stride=[6,1]", "model.padding=0"],
    ],
    ids=["mlp", "conv", "locally-connected"],
)
def test_receptive_fields_png(tmp_path, overrides):
    first = build_backbone(load_config("ff-bench", overrides).model, (1, 28, 28))[0]
    assert_png(save_receptive_fields(tmp_path / "fields.png", first, (1, 28, 28), count=16))


def test_receptive_fields_of_each_layer_kind():
    mlp = build_backbone(load_config("ff-bench", ["model.hidden=[20]"]).model, (1, 28, 28))[0]
    assert torch.equal(receptive_fields(mlp, (1, 28, 28))[3], mlp[2].weight.detach()[3].view(1, 28, 28))
    conv = build_backbone(load_config("ff-bench", ["model.arch=conv", "model.channels=[6]", "model.kernel_size=5"]).model, (1, 28, 28))[0]
    assert receptive_fields(conv, (1, 28, 28)).shape == (6, 1, 5, 5)
    local = build_backbone(load_config("ff-bench", ["model.arch=locally-connected", "model.channels=[3]", "model.kernel_size=10", "model.stride=6", "model.padding=0"]).model, (1, 28, 28))[0]
    fields = receptive_fields(local, (1, 28, 28))
    assert fields.shape == (16 * 3, 1, 28, 28)
    assert ((fields[0, 0] != 0).nonzero().amax(dim=0) < 10).all()  # the first position looks at the top-left 10x10 window


def visible_ticks(axis) -> list[float]:
    axis.figure.canvas.draw()
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_ticklocs() if low - 1e-9 <= t <= high + 1e-9]


def test_epoch_and_block_axes_have_integer_ticks():
    curves = learning_curves_figure({"layer1": ([1, 2], [3.0, 2.0])}, {"goodness": ([1, 2], [47.0, 62.0])}, chance=10.0)
    probes = probe_by_depth_figure({"run": [81.2, 78.9]}, chance=10.0)
    goodness = goodness_figure([1, 2], {"layer1": ([5.0, 6.0], [4.0, 3.0]), "layer2": ([5.0, 7.0], [4.0, 2.0])})
    readout_once = learning_curves_figure({"layer1": ([1], [3.0])}, {"readout (at the end)": ([1], [82.0])}, chance=10.0)
    for fig in (curves, probes, goodness, readout_once):
        for ax in fig.axes:
            ticks = visible_ticks(ax.xaxis)
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
        plt.close(fig)


def test_accuracy_axis_is_at_least_ten_points_says_where_it_starts_and_marks_baseline_and_chance():
    fig = probe_by_depth_figure({"run": [87.2, 87.5]}, chance=10.0, baseline=Baseline("end-to-end run bp (test)", 88.0))
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert top - bottom >= MIN_ACCURACY_SPAN and bottom <= 87.2 and top >= 88.0
    assert f"axis from {bottom:g}, not 0" in ax.get_ylabel() and "chance 10 % is below the axis" in ax.get_ylabel()
    marks = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() in ("--", ":")}
    assert marks == {"end-to-end run bp (test): 88.00 %": 88.0}
    plt.close(fig)

    fig = probe_by_depth_figure({"run": [99.2, 99.5]}, chance=10.0)  # near 100 the axis grows downwards, never past 100
    assert fig.axes[0].get_ylim() == (90.0, 100.0)
    plt.close(fig)

    fig = probe_by_depth_figure({"run": [15.0, 40.0]}, chance=10.0)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] <= 10.0 and "below the axis" not in ax.get_ylabel()
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("chance")] == [10.0]
    plt.close(fig)


def test_learning_curves_without_accuracy_have_no_empty_panel():
    fig = learning_curves_figure({"layer1": ([1, 2], [3.0, 2.0])}, {}, chance=10.0)
    assert len(fig.axes) == 1 and all(ax.get_lines() for ax in fig.axes)
    plt.close(fig)


def test_label_pixels_are_drawn_apart_and_do_not_take_the_fields_colour_scale(tmp_path):
    layer = torch.nn.Linear(28 * 28, 4, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, :10] = 100.0  # label pixels: far larger than the image weights
        layer.weight[:, 400] = 0.01
    fields, labels = split_label_pixels(receptive_fields(layer, (1, 28, 28)), 10, (1, 28, 28))
    assert torch.equal(labels, torch.full((4, 10), 100.0))
    shown = to_rgb(fields[0], signed=True)
    assert np.allclose(shown.reshape(-1, 3)[400], plt.get_cmap("RdBu_r")(1.0)[:3])  # the largest image weight is full red
    assert np.allclose(shown.reshape(-1, 3)[:10], LABEL_PIXEL_GREY)
    assert_png(save_receptive_fields(tmp_path / "fields.png", layer, (1, 28, 28), label_pixels=10))

    conv = torch.nn.Conv2d(1, 4, 3)  # kernels do not cover the label pixels: nothing to split
    fields, labels = split_label_pixels(receptive_fields(conv, (1, 28, 28)), 10, (1, 28, 28))
    assert labels is None and not fields.isnan().any()
