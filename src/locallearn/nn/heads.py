"""Heads that turn a block's output into the embedding its local self-supervised loss compares."""

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
    """[1x1 conv expansion + BN + ReLU] -> global average pool -> projector.

    Siddiqui et al. (2023) found a 1x1 convolution that expands a block's channels (to 2048
    for every ResNet-50 stage) before pooling the best head for a block-wise loss; `expand=0`
    pools the block's channels directly. A (B, F) output (an MLP block) is read as (B, F, 1, 1).

    Example:
        >>> head = PoolProjector(256, expand=2048, widths=[8192, 8192, 8192])
        >>> head(torch.randn(8, 256, 14, 14)).shape
        torch.Size([8, 8192])
    """

    def __init__(self, in_channels: int, expand: int = 0, widths: list[int] = ()):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(in_channels, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU(inplace=True)) if expand else nn.Identity()
        in_channels = expand or in_channels
        self.projector = projector(in_channels, list(widths))
        self.out_features = widths[-1] if widths else in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, :, None, None]
        return self.projector(self.expand(x).mean(dim=(2, 3)))


class DINOHead(nn.Module):
    """DINO's head: `PoolProjector` -> L2 normalisation -> prototypes, a linear layer with unit-norm rows.

    The prototypes layer is DINO's weight-normalised last layer with its gain fixed at 1
    (`norm_last_layer`), so every score is a cosine in [-1, 1] before the temperature.

    Example:
        >>> head = DINOHead(256, widths=[512, 128], prototypes=1024)
        >>> head(torch.randn(8, 256, 7, 7)).shape
        torch.Size([8, 1024])
    """

    def __init__(self, in_channels: int, expand: int = 0, widths: list[int] = (), prototypes: int = 1024):
        super().__init__()
        self.embed = PoolProjector(in_channels, expand, widths)
        self.prototypes = nn.Parameter(torch.randn(prototypes, self.embed.out_features) / self.embed.out_features**0.5)
        self.out_features = prototypes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(self.embed(x), dim=1), F.normalize(self.prototypes, dim=1))
