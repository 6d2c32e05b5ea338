"""A network as a list of blocks; each block owns its layers and its local objective."""

from __future__ import annotations

import itertools
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
    """Split layers into consecutive groups: one per layer, K groups, or one group.

    `block:K` puts its K-1 boundaries at even shares of the layers (rounded to the nearest
    layer), with two rules for ResNets (see `nn/resnet.py`): a layer marked `joins_next` (the
    stem) counts as one with the layer after it unless K is the number of layers, and when
    the layers carry a `stage` and K is the number of stages, the blocks are the stages.
    """
    if granularity == "layer":
        return [[layer] for layer in layers]
    if granularity == "end-to-end":
        return [list(layers)]
    k = int(granularity.split(":", 1)[1])
    if k > len(layers):
        raise UsageError(f"train.granularity=block:{k} asks for more blocks than the {len(layers)} layers of the model")
    stages = [getattr(layer, "stage", None) for layer in layers]
    if None not in stages and len(set(stages)) == k:
        return [list(group) for _, group in itertools.groupby(layers, key=lambda layer: layer.stage)]
    units: list[list[nn.Module]] = []
    for layer in layers:
        if units and getattr(units[-1][-1], "joins_next", False) and k < len(layers):
            units[-1].append(layer)
        else:
            units.append([layer])
    bounds = [round(i * len(units) / k) for i in range(k + 1)]
    return [[layer for unit in units[a:b] for layer in unit] for a, b in zip(bounds, bounds[1:])]


class Block(nn.Module):
    """Consecutive layers trained together by one local objective with its own optimizer.

    `block(x)` is the layers' output; `block(x, views)` also computes the local objective
    and returns `(output, loss, metrics)`, one call that DistributedDataParallel can wrap.

    An objective that owns modules following the block (e.g. a frozen teacher copy of its
    layers) defines `bind(layers)`, called once the layers exist; what it builds is then a
    submodule of the block, saved in checkpoints and moved by `.to(device)`. An objective
    whose modules read the block's input (a teacher) sets `needs_input = True` and is called
    as `objective(out, views, inputs=x)`.
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
        extra = {"inputs": x} if getattr(self.objective, "needs_input", False) else {}
        loss, metrics = self.objective(out, views, **extra)
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
