"""Cross-entropy through a linear head per block: plain backprop with one block, greedy supervised with many."""

from __future__ import annotations

import torch

from locallearn.methods.base import Method, MethodOptions
from locallearn.nn.network import LocalNet
from locallearn.objectives.classification import LocalClassifierLoss
from locallearn.views.base import Views


class BackpropOptions(MethodOptions):
    pass


class Backprop(Method):
    """Each block learns to classify its own output; the graph is cut only between blocks.

    With `train.granularity=end-to-end` the net is one block and this is ordinary
    backprop of a cross-entropy loss, which makes it the like-for-like baseline.
    """

    name = "backprop"
    Options = BackpropOptions
    primary = "net"

    def objective(self, index: int, num_blocks: int, width: int) -> LocalClassifierLoss:
        return LocalClassifierLoss(width, self.data.num_classes)

    def make_views(self, x, y, index, generator) -> Views:
        return Views(inputs=x, num_positive=x.shape[0], labels=y)

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = net.forward_blocks(x)
        with torch.no_grad():
            scores = {block.name: block.objective.score(out) for block, out in zip(net.blocks, outputs)}
        scores["net"] = scores[net.blocks[-1].name]
        return scores
