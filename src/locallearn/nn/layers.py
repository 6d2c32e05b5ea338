"""Layers of local-learning networks: input normalisations, dense and image (conv / locally connected) FF layers."""

from __future__ import annotations

import torch
from torch import nn

from locallearn.nn.noise import Dropout

EPS = 1e-8


class InputNorm(nn.Module):
    """Normalise each example's activity vector before a layer uses it.

    Forward-Forward needs this: the goodness of a layer is the length of its activity
    vector, so without normalising it the next layer could read the previous layer's
    decision straight off the length. `rms` scales every vector to unit root-mean-square
    (Hinton's choice), `l2` to unit length, `none` leaves it alone. The vector is the
    whole example, or with `per_position` the channels at each position of a (B, C, H, W)
    input (which also hides a goodness taken per position).
    """

    def __init__(self, kind: str = "rms", per_position: bool = False):
        super().__init__()
        if kind not in ("rms", "l2", "none"):
            raise ValueError(f"unknown input norm {kind!r}; valid: rms, l2, none")
        self.kind = kind
        self.per_position = per_position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        dims = (1,) if self.per_position else tuple(range(1, x.dim()))
        if self.kind == "rms":
            return x * torch.rsqrt(x.square().mean(dim=dims, keepdim=True) + EPS)
        return x * torch.rsqrt(x.square().sum(dim=dims, keepdim=True) + EPS)

    def extra_repr(self) -> str:
        return f"{self.kind}, per_position" if self.per_position else self.kind


class _ReLUFullGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class ReLUFullGrad(nn.Module):
    """ReLU forward, identity backward: a unit that is off still gets gradient.

    FF's goodness gives no gradient to a unit that is off (d h^2/dh = 0 at h = 0), and most
    of a wide FF layer's ReLUs go off for good. With this activation, peer normalisation
    (`method.peer_weight`), which pushes every unit's mean activity towards the layer's,
    can switch them back on (as in Loewe's FF implementation).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReLUFullGrad.apply(x)


ACTIVATIONS = {"relu": nn.ReLU, "relu-fullgrad": ReLUFullGrad, "gelu": nn.GELU, "tanh": nn.Tanh}


def dropout(p: float) -> list[nn.Module]:
    """A dropout module for a layer's normalised input, or none when `p` is 0."""
    return [Dropout(p)] if p else []


class DenseLayer(nn.Sequential):
    """normalise input [-> dropout] -> linear -> activation [-> BatchNorm]: one layer of an FF or backprop MLP.

    With `out_norm="batch"` the layer ends with BatchNorm, as `ImageLayer` can: its
    objective and the next layer see each unit normalised over the batch.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "relu", input_norm: str = "rms", dropout_p: float = 0.0, out_norm: str = "none"):
        batch_norm = [nn.BatchNorm1d(out_features)] if out_norm == "batch" else []
        super().__init__(InputNorm(input_norm), *dropout(dropout_p), nn.Linear(in_features, out_features), ACTIVATIONS[activation](), *batch_norm)
        self.out_features = out_features


POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class ImageLayer(nn.Sequential):
    """[pool] -> normalise [-> dropout] -> `op` (a conv or locally connected map) -> activation [-> BatchNorm], on (B, C, H, W).

    The pooling (window = stride = `pool`; none when 1) is the layer's first step, so
    the previous layer's local objective sees its own full-resolution output. With
    `out_norm="batch"` the layer ends with BatchNorm, as CwComp's layers do: its
    objective and the next layer see activities normalised per channel over the batch.
    `out_features` is the number of output channels.
    """

    def __init__(self, op: nn.Module, out_channels: int, activation: str = "relu", input_norm: str = "rms", per_position: bool = False, pool: int = 1, pool_kind: str = "max", out_norm: str = "none", dropout_p: float = 0.0):
        pooling = [POOLS[pool_kind](pool)] if pool > 1 else []
        batch_norm = [nn.BatchNorm2d(out_channels)] if out_norm == "batch" else []
        super().__init__(*pooling, InputNorm(input_norm, per_position), *dropout(dropout_p), op, ACTIVATIONS[activation](), *batch_norm)
        self.out_features = out_channels
