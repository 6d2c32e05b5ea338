"""Layers of local-learning networks: input normalisations and dense FF layers."""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-8


class InputNorm(nn.Module):
    """Normalise each example's activity vector before a layer uses it.

    Forward-Forward needs this: the goodness of a layer is the length of its activity
    vector, so without normalising it the next layer could read the previous layer's
    decision straight off the length. `rms` scales every vector to unit root-mean-square
    (Hinton's choice), `l2` to unit length, `none` leaves it alone.
    """

    def __init__(self, kind: str = "rms"):
        super().__init__()
        if kind not in ("rms", "l2", "none"):
            raise ValueError(f"unknown input norm {kind!r}; valid: rms, l2, none")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        dims = tuple(range(1, x.dim()))
        if self.kind == "rms":
            return x * torch.rsqrt(x.square().mean(dim=dims, keepdim=True) + EPS)
        return x * torch.rsqrt(x.square().sum(dim=dims, keepdim=True) + EPS)

    def extra_repr(self) -> str:
        return self.kind


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class DenseLayer(nn.Sequential):
    """normalise input -> linear -> activation: one layer of an FF or backprop MLP."""

    def __init__(self, in_features: int, out_features: int, activation: str = "relu", input_norm: str = "rms"):
        super().__init__(InputNorm(input_norm), nn.Linear(in_features, out_features), ACTIVATIONS[activation]())
        self.out_features = out_features
