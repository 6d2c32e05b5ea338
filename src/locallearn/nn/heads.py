"""Heads on a block's output: the projector of a self-supervised loss, the conv front of a deeper local head, a reconstruction decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def projector(in_features: int, widths: list[int]) -> nn.Sequential:
    """SimCLR/Barlow Twins projector: (Linear, BatchNorm, ReLU) per hidden width, then a last Linear.

    `widths` lists the output widths of every linear layer; `[]` is the identity.
    """
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers.append(nn.Linear(in_features, width, bias=False))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        in_features = width
    return nn.Sequential(*layers)


class PoolProjector(nn.Module):
    """[3x3 convs] -> [1x1 conv expansion + BN + ReLU] -> global average pool -> projector.

    Siddiqui et al. (2023) found a 1x1 convolution that expands a block's channels (to 2048
    for every ResNet-50 stage) before pooling the best head for a block-wise loss; `expand=0`
    pools the block's channels directly. `convs` 3x3 conv + BN + ReLU layers first make the
    head deeper (`conv_stack`). A (B, F) output (an MLP block) is read as (B, F, 1, 1).

    Example:
        >>> head = PoolProjector(256, expand=2048, widths=[8192, 8192, 8192])
        >>> head(torch.randn(8, 256, 14, 14)).shape
        torch.Size([8, 8192])
    """

    def __init__(self, in_channels: int, expand: int = 0, widths: list[int] = (), convs: int = 0):
        super().__init__()
        self.convs = conv_stack(in_channels, convs)
        self.expand = nn.Sequential(nn.Conv2d(in_channels, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU(inplace=True)) if expand else nn.Identity()
        in_channels = expand or in_channels
        self.projector = projector(in_channels, list(widths))
        self.out_features = widths[-1] if widths else in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, :, None, None]
        return self.projector(self.expand(self.convs(x)).mean(dim=(2, 3)))


def conv_stack(channels: int, depth: int) -> nn.Sequential:
    """`depth` times (3x3 conv -> BatchNorm -> ReLU), keeping `channels`: the convolutional front of a
    deeper local head, as the auxiliary nets of DGL (Belilovsky et al. 2020) and AugLocal (Ma et al. 2024).
    `depth=0` is the identity."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """InfoPro's reconstruction head (Wang et al. 2021): 3x3 conv to `hidden` channels + BatchNorm + ReLU
    on a block's (B, C, H, W) output, resized to the image's size (bilinear), then 3x3 conv to the
    image's channels.

    InfoPro resizes the block's output before its first conv; resizing the `hidden` channels after
    it instead makes that wide conv (C x `hidden` x 9 per position) run at the block's resolution,
    (image / block resolution)^2 times cheaper, which is what makes the term affordable on CPUs.

    Example:
        >>> decoder = Decoder(64, image_channels=1)
        >>> decoder(torch.randn(8, 64, 7, 7), (28, 28)).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, in_channels: int, image_channels: int, hidden: int = 12):
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(hidden, image_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.out(F.interpolate(self.encode(x), size=tuple(size), mode="bilinear", align_corners=False))


class DINOHead(nn.Module):
    """DINO's head: `PoolProjector` -> L2 normalisation -> prototypes, a linear layer with unit-norm rows.

    The prototypes layer is DINO's weight-normalised last layer with its gain fixed at 1
    (`norm_last_layer`), so every score is a cosine in [-1, 1] before the temperature.

    Example:
        >>> head = DINOHead(256, widths=[512, 128], prototypes=1024)
        >>> head(torch.randn(8, 256, 7, 7)).shape
        torch.Size([8, 1024])
    """

    def __init__(self, in_channels: int, expand: int = 0, widths: list[int] = (), prototypes: int = 1024, convs: int = 0):
        super().__init__()
        self.embed = PoolProjector(in_channels, expand, widths, convs)
        self.prototypes = nn.Parameter(torch.randn(prototypes, self.embed.out_features) / self.embed.out_features**0.5)
        self.out_features = prototypes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(self.embed(x), dim=1), F.normalize(self.prototypes, dim=1))
