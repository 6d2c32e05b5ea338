"""Locally connected layer: receptive fields like a convolution's, without weight sharing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Positions along one axis of a convolution-like map."""
    return (size + 2 * padding - kernel_size) // stride + 1


class LocallyConnected2d(nn.Module):
    """(B, C, H, W) -> (B, O, H', W'): every output position has its own `O` filters over its window.

    As `nn.Conv2d` with the same kernel, stride and padding, except that no weight is
    shared between positions (Hinton 2022 used such layers for his 1.16% MNIST result).
    Computed as one batched matrix product over positions.

    Example:
        >>> layer = LocallyConnected2d(1, 128, (28, 28), kernel_size=10, stride=6)   # a 4x4 grid of 128 units
        >>> layer(torch.randn(8, 1, 28, 28)).shape
        torch.Size([8, 128, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, in_size: tuple[int, int], kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.in_channels, self.out_channels, self.in_size = in_channels, out_channels, tuple(in_size)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.out_size = tuple(output_size(s, kernel_size, stride, padding) for s in self.in_size)
        positions, fan_in = math.prod(self.out_size), in_channels * kernel_size**2
        bound = 1 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.empty(positions, fan_in, out_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(positions, 1, out_channels).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        windows = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (B, fan_in, positions)
        out = torch.baddbmm(self.bias, windows.permute(2, 0, 1), self.weight)  # (positions, B, O)
        return out.permute(1, 2, 0).reshape(x.shape[0], self.out_channels, *self.out_size)

    def receptive_fields(self) -> torch.Tensor:
        """(positions * O, C, H, W): each unit's weights placed where it looks in the input, position-major."""
        positions, fan_in, out = self.weight.shape
        cols = torch.zeros(positions, out, fan_in, positions, device=self.weight.device)
        index = torch.arange(positions, device=self.weight.device)
        cols[index, :, :, index] = self.weight.detach().transpose(1, 2)
        return F.fold(cols.reshape(positions * out, fan_in, positions), self.in_size, self.kernel_size, padding=self.padding, stride=self.stride)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
