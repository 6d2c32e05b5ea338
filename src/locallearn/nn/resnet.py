"""ResNets (He et al. 2016) as their residual units: the layers that granularity groups into blocks.

Each residual unit is one layer, and so is the stem, which is ImageNet's (7x7 stride-2 conv
+ 3x3 max-pool) or, for 28x28/32x32 images, one 3x3 stride-1 conv without pooling (as for
CIFAR). ResNet-18 is the stem + 8 basic units, ResNet-50 the stem + 16 bottlenecks, both in
4 stages; ResNet-32 (the CIFAR net of He et al. and of InfoPro, Wang et al. 2021) is the
stem + 15 basic units in 3 stages. Every layer knows its `stage` (the stem counts with the
first), so that `group_layers` can cut a ResNet into its stages (`block:4` is the four
stage-blocks of Siddiqui et al. 2023), and the stem is marked `joins_next`: it shares the
first unit's block unless every layer is a block of its own. The last BatchNorm of every
residual branch starts at zero (zero-init residual, as in Barlow Twins).
"""

from __future__ import annotations

from torch import nn

from locallearn.errors import UsageError
from locallearn.nn.noise import ActivityNoise


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = True, zero: bool = False) -> list[nn.Module]:
    bn = nn.BatchNorm2d(out_channels)
    if zero:
        nn.init.zeros_(bn.weight)
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False), bn]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class Residual(nn.Module):
    """relu(branch(x) + shortcut(x)); the shortcut is a 1x1 conv + BN when the shape changes."""

    def __init__(self, branch: list[nn.Module], in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.branch = nn.Sequential(*branch)
        same = stride == 1 and in_channels == out_channels
        self.shortcut = nn.Identity() if same else nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.branch(x) + self.shortcut(x))


def basic_block(in_channels: int, planes: int, stride: int) -> Residual:
    """Two 3x3 convs (ResNet-18/32/34); `planes` output channels."""
    branch = conv_bn(in_channels, planes, 3, stride) + conv_bn(planes, planes, 3, relu=False, zero=True)
    return Residual(branch, in_channels, planes, stride)


def bottleneck(in_channels: int, planes: int, stride: int) -> Residual:
    """1x1 -> 3x3 (with the stride, as torchvision's v1.5) -> 1x1 expanding to 4 * `planes` (ResNet-50)."""
    branch = conv_bn(in_channels, planes, 1) + conv_bn(planes, planes, 3, stride) + conv_bn(planes, 4 * planes, 1, relu=False, zero=True)
    return Residual(branch, in_channels, 4 * planes, stride)


# name: (unit, channel expansion of a unit, units per stage, the first stage's planes as a fraction of `width`)
RESNETS = {
    "resnet18": (basic_block, 1, [2, 2, 2, 2], 1),
    "resnet32": (basic_block, 1, [5, 5, 5], 1 / 4),
    "resnet50": (bottleneck, 4, [3, 4, 6, 3], 1),
}


class Stage(nn.Sequential):
    """Consecutive modules with `out_features` (the number of output channels), `stage` (the index of
    the ResNet stage they belong to; None outside ResNets) and `joins_next` (true for a stem, which
    `group_layers` keeps in the block of the layer after it unless every layer is its own block)."""

    def __init__(self, modules: list[nn.Module], out_features: int, stage: int | None = None, joins_next: bool = False):
        super().__init__(*modules)
        self.out_features = out_features
        self.stage = stage
        self.joins_next = joins_next


def stem(in_channels: int, width: int, imagenet: bool) -> list[nn.Module]:
    if imagenet:
        return conv_bn(in_channels, width, 7, 2) + [nn.MaxPool2d(3, 2, 1)]
    return conv_bn(in_channels, width, 3)


def resnet_units(name: str, in_channels: int, width: int = 64, imagenet_stem: bool = True, noise: float = 0.0) -> list[Stage]:
    """The stem and residual units of `name` (a key of `RESNETS`), one layer each.

    Stage i has `width` * 2**i planes (a quarter of that for ResNet-32, 16-32-64 at the default
    64), times 4 output channels for ResNet-50's bottlenecks; stages after the first start with
    stride 2. With `noise` > 0 the last unit of every stage ends with `ActivityNoise(noise)`, so
    the stage-blocks see the noise where Siddiqui et al. (2023) put it.

    Example:
        >>> layers = resnet_units("resnet18", in_channels=1, width=16, imagenet_stem=False)
        >>> len(layers), [layer.out_features for layer in layers[::2]]
        (9, [16, 16, 32, 64, 128])
    """
    unit, expansion, depths, fraction = RESNETS[name]
    base = int(width * fraction)
    if base < 1:
        raise UsageError(f"model.width={width} is too small for {name}, whose first stage has width * {fraction} channels; use model.width >= {int(1 / fraction)}")
    layers = [Stage(stem(in_channels, base, imagenet_stem), base, stage=0, joins_next=True)]
    channels = base
    for i, depth in enumerate(depths):
        planes = base * 2**i
        for j in range(depth):
            modules = [unit(channels, planes, 2 if i > 0 and j == 0 else 1)]
            channels = planes * expansion
            if noise and j == depth - 1:
                modules.append(ActivityNoise(noise))
            layers.append(Stage(modules, channels, stage=i))
    return layers


def resnet_layers(model, input_shape: tuple[int, int, int]) -> list[Stage]:
    """The layers of a `ModelConfig` with a ResNet `arch` for (C, H, W) inputs (keys `width`, `stem`, `activity_noise`)."""
    imagenet = model.stem == "imagenet" or (model.stem == "auto" and min(input_shape[1:]) >= 128)
    return resnet_units(model.arch, input_shape[0], model.width, imagenet, model.activity_noise)
