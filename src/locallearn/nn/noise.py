"""Noise injected into the activity between layers during training (Siddiqui et al. 2023, section 4)."""

from __future__ import annotations

import torch
from torch import nn


class ActivityNoise(nn.Module):
    """Adds Gaussian noise of `std` times the batch activity's std, in training mode only.

    Placed at the end of a layer, the noise reaches that layer's local loss and the next
    layer's input (the paper's "all" variant; it used std=0.25). The random stream is a
    buffer (a seed drawn from torch's generator at construction, and a call counter), so
    it is saved with the weights and a resumed run draws the same noise.

    Example:
        >>> layer = nn.Sequential(nn.Conv2d(3, 64, 3), ActivityNoise(0.25))
    """

    def __init__(self, std: float):
        super().__init__()
        self.std = std
        self.register_buffer("stream", torch.stack([torch.randint(2**62, ()), torch.tensor(0)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        seed, calls = self.stream.tolist()
        self.stream[1] += 1
        generator = torch.Generator(device=x.device).manual_seed(seed + calls)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + self.std * x.detach().std() * noise

    def extra_repr(self) -> str:
        return f"std={self.std}"
