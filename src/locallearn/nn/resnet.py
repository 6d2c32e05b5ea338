"""ResNet-18/50 (He et al. 2016) as four stages: the layers that granularity groups into blocks.

Stage 1 holds the stem, so `block:4` (or `layer`) gives the four stage-blocks of
Siddiqui et al. (2023), `block:2` two halves, `end-to-end` the whole ResNet. The stem is
ImageNet's (7x7 stride-2 conv + 3x3 max-pool) or, for 28x28/32x32 images, one 3x3
stride-1 conv without pooling (as for CIFAR). The last BatchNorm of every residual branch
starts at zero (zero-init residual, as in Barlow Twins).
"""

from __future__ import annotations

from torch import nn

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
    """Two 3x3 convs (ResNet-18/34); `planes` output channels."""
    branch = conv_bn(in_channels, planes, 3, stride) + conv_bn(planes, planes, 3, relu=False, zero=True)
    return Residual(branch, in_channels, planes, stride)


def bottleneck(in_channels: int, planes: int, stride: int) -> Residual:
    """1x1 -> 3x3 (with the stride, as torchvision's v1.5) -> 1x1 expanding to 4 * `planes` (ResNet-50)."""
    branch = conv_bn(in_channels, planes, 1) + conv_bn(planes, planes, 3, stride) + conv_bn(planes, 4 * planes, 1, relu=False, zero=True)
    return Residual(branch, in_channels, 4 * planes, stride)


RESNETS = {"resnet18": (basic_block, 1, [2, 2, 2, 2]), "resnet50": (bottleneck, 4, [3, 4, 6, 3])}


class Stage(nn.Sequential):
    """Consecutive modules with `out_features`: the number of output channels."""

    def __init__(self, modules: list[nn.Module], out_features: int):
        super().__init__(*modules)
        self.out_features = out_features


def stem(in_channels: int, width: int, imagenet: bool) -> list[nn.Module]:
    if imagenet:
        return conv_bn(in_channels, width, 7, 2) + [nn.MaxPool2d(3, 2, 1)]
    return conv_bn(in_channels, width, 3)


def resnet_stages(name: str, in_channels: int, width: int = 64, imagenet_stem: bool = True, noise: float = 0.0) -> list[Stage]:
    """The four stages of `name` ('resnet18', 'resnet50'): widths `width` * (1, 2, 4, 8) (times 4 for ResNet-50).

    With `noise` > 0 each stage ends with `ActivityNoise(noise)`.

    Example:
        >>> stages = resnet_stages("resnet18", in_channels=1, width=16, imagenet_stem=False)
        >>> [s.out_features for s in stages]
        [16, 32, 64, 128]
    """
    block, expansion, depths = RESNETS[name]
    stages = []
    channels = width
    modules = stem(in_channels, width, imagenet_stem)
    for i, depth in enumerate(depths):
        planes = width * 2**i
        for j in range(depth):
            modules.append(block(channels, planes, 2 if i > 0 and j == 0 else 1))
            channels = planes * expansion
        stages.append(Stage(modules + ([ActivityNoise(noise)] if noise else []), channels))
        modules = []
    return stages


def resnet_layers(model, input_shape: tuple[int, int, int]) -> list[Stage]:
    """The stages of a `ModelConfig` with `arch: resnet18 | resnet50` for (C, H, W) inputs (keys `width`, `stem`, `activity_noise`)."""
    imagenet = model.stem == "imagenet" or (model.stem == "auto" and min(input_shape[1:]) >= 128)
    return resnet_stages(model.arch, input_shape[0], model.width, imagenet, model.activity_noise)
