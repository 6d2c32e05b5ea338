"""Pictures: hybrid-negative examples and first-layer receptive fields are written as valid PNGs."""

from __future__ import annotations

import matplotlib.image
import pytest
import torch

from helpers import random_images
from locallearn.config import load_config
from locallearn.nn.backbones import build_backbone
from locallearn.pictures import receptive_fields, save_hybrid_examples, save_receptive_fields

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
