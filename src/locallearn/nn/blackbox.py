"""Black boxes between layers: a fixed, non-differentiable operation on each layer's input after the first.

Hinton (2022) points out that Forward-Forward needs no derivative of what lies between two
layers: each layer learns from its own goodness, on the detached output of the layer below.
`model.blackbox` puts such a box before every layer but the first, the same in training and
evaluation, with no parameters and no gradient. With one block per layer each box sits right
after a cut, so nothing has to be differentiated through it; a box inside a block would block
the gradient of the layers before it and is refused, unless `model.blackbox_grad=straight-through`
passes the gradient through the box unchanged (the straight-through estimator).

The boxes (all act on dimension 1: the units of a dense layer, the channels at each position
of an image layer):
- `sign`: sign(x), so that ReLU activity becomes binary spikes (1 where a unit fires, 0 elsewhere).
- `quantize`: each example's values are rounded to `levels` evenly spaced levels between its own
  minimum and maximum (an example whose values are all equal passes unchanged).
- `kwta`: a fixed random k-winners-take-all: the units are reordered by a random permutation
  drawn once from the run's seed and the layer's position (a buffer, saved with the weights),
  then at every example (and position) exactly the `k` largest values are kept (ties broken by
  `torch.topk`) and the rest set to 0. For a dense next layer the permutation only renames its
  inputs; for an image layer it also mixes the channels' order.
"""

from __future__ import annotations

import torch
from torch import nn

from locallearn.errors import UsageError
from locallearn.nn.network import group_layers


class BlackBox(nn.Module):
    """One box (`sign`, `quantize` or `kwta`, see the module docstring) for inputs with `width` units on dimension 1.

    Example:
        >>> box = BlackBox("kwta", width=500, k=50, seed=1)
        >>> box(torch.randn(8, 500)).count_nonzero(dim=1)   # 50 for every example
    """

    def __init__(self, kind: str, width: int, levels: int = 4, k: int = 1, seed: int = 0, straight_through: bool = False):
        super().__init__()
        if kind == "kwta" and not 0 < k <= width:
            raise UsageError(f"model.blackbox_k={k} must be between 1 and the {width} units of the layer the box follows")
        self.kind, self.levels, self.k, self.straight_through = kind, levels, k, straight_through
        if kind == "kwta":
            self.register_buffer("permutation", torch.randperm(width, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self.box(x)
        if self.straight_through and x.requires_grad:
            return x + (y - x).detach()  # forward: the box; backward: the identity
        return y

    def box(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "sign":
            return torch.sign(x)
        if self.kind == "quantize":
            dims = tuple(range(1, x.dim()))
            low, high = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
            step = (high - low) / (self.levels - 1)
            return torch.where(step > 0, low + torch.round((x - low) / step.clamp_min(1e-12)) * step, x)
        shuffled = x.index_select(1, self.permutation)
        winners = shuffled.topk(self.k, dim=1)
        return torch.zeros_like(shuffled).scatter(1, winners.indices, winners.values)

    def extra_repr(self) -> str:
        return f"{self.kind}, levels={self.levels}, k={self.k}, straight_through={self.straight_through}"


def with_blackboxes(layers: list[nn.Module], model, granularity: str, seed: int) -> list[nn.Module]:
    """`layers` with a box (`model.blackbox`) on the input of every layer but the first; refuses a box inside a block
    (`train.granularity` coarser than one layer per block) unless `model.blackbox_grad=straight-through`."""
    if model.blackbox == "none":
        return layers
    if model.blackbox_grad == "none" and any(len(group) > 1 for group in group_layers(layers, granularity)):
        raise UsageError(f"model.blackbox={model.blackbox} has no gradient, and train.granularity={granularity} puts boxes inside a block whose "
                         "loss would have to be differentiated through them; use train.granularity=layer, or model.blackbox_grad=straight-through")
    boxed = layers[:1]
    for index, (before, layer) in enumerate(zip(layers, layers[1:]), 1):
        box = BlackBox(model.blackbox, before.out_features, model.blackbox_levels, model.blackbox_k, seed * 1000 + index,
                       model.blackbox_grad == "straight-through")
        pair = nn.Sequential(box, layer)
        pair.out_features = layer.out_features
        boxed.append(pair)
    return boxed
