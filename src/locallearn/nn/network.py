"""A network as a list of blocks; each block owns its layers and its local objective."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from locallearn.errors import UsageError
from locallearn.nn.layers import DenseLayer


def build_layers(arch: str, hidden: list[int], input_shape: tuple[int, ...], activation: str, input_norm: str, dropout_p: tuple[float, float] = (0.0, 0.0), out_norm: str = "none") -> list[nn.Module]:
    """The layers of the backbone, in order; each has an `out_features` attribute.

    `dropout_p` is the dropout probability on the first layer's input and on each later layer's;
    `out_norm` is what ends every layer (`none`, or `batch` for BatchNorm)."""
    if arch != "mlp":
        raise UsageError(f"unknown model.arch {arch!r}; valid: mlp")
    widths = [math.prod(input_shape), *hidden]
    layers: list[nn.Module] = [DenseLayer(i, o, activation, input_norm, dropout_p[k > 0], out_norm) for k, (i, o) in enumerate(zip(widths, widths[1:]))]
    layers[0] = nn.Sequential(nn.Flatten(), *layers[0])
    layers[0].out_features = hidden[0]
    return layers


def group_layers(layers: list[nn.Module], granularity: str) -> list[list[nn.Module]]:
    """Split layers into consecutive groups: one per layer, K even groups, or one group."""
    if granularity == "layer":
        return [[layer] for layer in layers]
    if granularity == "end-to-end":
        return [list(layers)]
    k = int(granularity.split(":", 1)[1])
    if k > len(layers):
        raise UsageError(f"train.granularity=block:{k} asks for more blocks than the {len(layers)} layers of the model")
    bounds = [round(i * len(layers) / k) for i in range(k + 1)]
    return [list(layers[a:b]) for a, b in zip(bounds, bounds[1:])]


class Block(nn.Module):
    """Consecutive layers trained together by one local objective with its own optimizer.

    `block(x)` is the layers' output; `block(x, views)` also computes the local objective
    and returns `(output, loss, metrics)`, one call that DistributedDataParallel can wrap.

    An objective that owns modules following the block (e.g. a frozen teacher copy of its
    layers) defines `bind(layers)`, called once the layers exist; what it builds is then a
    submodule of the block, saved in checkpoints and moved by `.to(device)`.
    """

    def __init__(self, name: str, layers: list[nn.Module], objective: nn.Module):
        super().__init__()
        self.name = name
        self.layers = nn.Sequential(*layers)
        self.objective = objective
        self.out_features = layers[-1].out_features
        bind = getattr(objective, "bind", None)
        if bind is not None:
            bind(self.layers)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the block's optimizer updates: all but frozen ones (a teacher's)."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor, views=None):
        out = self.layers(x)
        if views is None:
            return out
        loss, metrics = self.objective(out, views)
        return out, loss, metrics


class LocalNet(nn.Module):
    """The blocks in order. `forward_blocks` returns every block's output (or the first few), without grad."""

    def __init__(self, blocks: list[Block]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    @torch.no_grad()
    def forward_blocks(self, x: torch.Tensor, depth: Optional[int] = None) -> list[torch.Tensor]:
        """Outputs of the first `depth` blocks (all by default), each fed the one before."""
        outputs = []
        for block in self.blocks[:depth]:
            x = block(x)
            outputs.append(x)
        return outputs
