"""Noise injected into activities during training: Gaussian activity noise and dropout, on streams saved with the weights."""

from __future__ import annotations

import torch
from torch import nn


RANK_STRIDE = 0x9E3779B97F4A7C15  # odd and near 2**64 / golden ratio: rank streams never meet a counter's seeds


class _SeededNoise(nn.Module):
    """A training-only noise whose random stream is a buffer: a seed drawn from torch's
    generator at construction and a call counter. It is saved with the weights, so a
    resumed run draws the same noise as an uninterrupted one.

    `rank` (not saved; set by `set_noise_rank`) gives each data-parallel rank its own
    noise from the same buffer, which every rank holds alike; rank 0 draws what one
    process draws."""

    def __init__(self):
        super().__init__()
        self.register_buffer("stream", torch.stack([torch.randint(2**62, ()), torch.tensor(0)]))
        self.rank = 0

    def next_generator(self, device: torch.device) -> torch.Generator:
        seed, calls = self.stream.tolist()
        self.stream[1] += 1
        return torch.Generator(device=device).manual_seed((seed + calls + self.rank * RANK_STRIDE) % 2**64)


class ActivityNoise(_SeededNoise):
    """Adds Gaussian noise of `std` times the batch activity's std, in training mode only.

    Placed at the end of a layer, the noise reaches that layer's local loss and the next
    layer's input (Siddiqui et al. 2023, section 4: the "all" variant; it used std=0.25).

    Example:
        >>> layer = nn.Sequential(nn.Conv2d(3, 64, 3), ActivityNoise(0.25))
    """

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        noise = torch.randn(x.shape, generator=self.next_generator(x.device), device=x.device, dtype=x.dtype)
        return x + self.std * x.detach().std() * noise

    def extra_repr(self) -> str:
        return f"std={self.std}"


class Dropout(_SeededNoise):
    """Inverted dropout: in training, zeroes each unit with probability `p` and scales the rest by 1 / (1 - p).

    `nn.Dropout` draws from torch's global generator, which a resumed run cannot replay;
    this one draws from its own saved stream.

    Example:
        >>> layer = nn.Sequential(Dropout(0.2), nn.Linear(784, 2000), nn.ReLU())
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability {p} is not in [0, 1)")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.next_generator(x.device), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def set_noise_rank(net: nn.Module, rank: int) -> None:
    """Give every noise module of `net` the stream of data-parallel rank `rank`, so ranks drop different units."""
    for module in net.modules():
        if isinstance(module, _SeededNoise):
            module.rank = rank
