"""Cross-entropy through a head per block: plain backprop with one block, greedy supervised with many."""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field
from torch import nn

from locallearn.methods.base import Method, MethodOptions
from locallearn.nn.network import LocalNet
from locallearn.objectives.classification import LocalClassifierLoss
from locallearn.objectives.reconstruction import with_reconstruction
from locallearn.views.augment import AugmentOptions, augment
from locallearn.views.base import Views


class BackpropOptions(MethodOptions):
    """`method.*` keys of `backprop`: the heads and optional augmentation (each key's meaning is its description)."""

    head_pool: int = Field(1, gt=0, description="A conv block's output is average-pooled to this many positions per side for its head (1 = global).")
    head_hidden: list[int] = Field(default_factory=list, description="Widths of the head's hidden ReLU layers ([] = linear head).")
    head_convs: int = Field(0, ge=0, description="3x3 conv + BatchNorm + ReLU layers (at the block's width) at the start of each block's head, before its pool (DGL's deeper auxiliary heads; 0 = none)")
    recon_weight: float = Field(0.0, ge=0, description="weight of InfoPro's term added to each block's loss: a decoder's mean squared error in rebuilding the input images from the block's output (0 = off)")
    augment: Optional[AugmentOptions] = Field(None, description="If set, each training image is one random view (the method.augment.* keys); null = as is.")


class Backprop(Method):
    """Each block learns to classify its own output; the graph is cut only between blocks.

    With `train.granularity=end-to-end` the net is one block and this is ordinary
    backprop of a cross-entropy loss, which makes it the like-for-like baseline.
    """

    name = "backprop"
    Options = BackpropOptions
    primary = "net"

    def objective(self, index: int, num_blocks: int, width: int) -> nn.Module:
        o = self.options
        classifier = LocalClassifierLoss(width, self.data.num_classes, o.head_pool, o.head_hidden, o.head_convs)
        return with_reconstruction(classifier, width, self.data.image_shape[0], o.recon_weight)

    def make_views(self, x, y, index, generator) -> Views:
        if self.options.augment is not None:
            x = augment(x, self.options.augment, self.data.pixel_low, self.data.pixel_high, generator)
        return Views(inputs=x, num_positive=x.shape[0], labels=y)

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = net.forward_blocks(x)
        with torch.no_grad():
            scores = {block.name: block.objective.score(out) for block, out in zip(net.blocks, outputs)}
        scores["net"] = scores[net.blocks[-1].name]
        return scores
