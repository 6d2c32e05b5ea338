"""A VGG-style CNN: one layer per convolution, each `[max-pool] -> conv -> BatchNorm -> activation`."""

from __future__ import annotations

from torch import nn

from locallearn.errors import UsageError
from locallearn.nn.layers import ACTIVATIONS, POOLS
from locallearn.nn.local import output_size
from locallearn.nn.noise import ActivityNoise
from locallearn.nn.resnet import Stage


def vgg_layers(model, input_shape: tuple[int, int, int]) -> list[Stage]:
    """The layers of a `ModelConfig` with `arch: vgg`, for (C, H, W) inputs.

    Uses `channels`, `kernel_size`, `stride`, `padding`, `pool` (the pooling window at the
    start of a layer; 1 = none), `pool_kind`, `activation` and `activity_noise`. Pooling
    first means a layer's local loss sees its own full-resolution output.

    Example (a small VGG for 28x28 images: 28 -> 14 -> 7):
        >>> model = ModelConfig(arch="vgg", channels=[32, 64, 128, 256], pool=[1, 2, 2, 1])
        >>> layers = vgg_layers(model, (1, 28, 28))
    """
    channels, height, width = input_shape
    layers = []
    settings = zip(model.channels, model.kernel_size, model.stride, model.padding, model.pool)
    for i, (out, kernel, stride, padding, pool) in enumerate(settings):
        height, width = (output_size(size // pool, kernel, stride, padding) for size in (height, width))
        if height < 1 or width < 1:
            raise UsageError(f"model: layer {i + 1} of the vgg backbone has no output positions left for {tuple(input_shape)} inputs; use fewer pools or strides")
        modules = [POOLS[model.pool_kind](pool)] if pool > 1 else []
        modules += [nn.Conv2d(channels, out, kernel, stride, padding, bias=False), nn.BatchNorm2d(out), ACTIVATIONS[model.activation]()]
        if model.activity_noise:
            modules.append(ActivityNoise(model.activity_noise))
        layers.append(Stage(modules, out))
        channels = out
    return layers
