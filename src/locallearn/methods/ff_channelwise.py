"""Channel-wise competitive Forward-Forward (CwComp; Papachristodoulou et al., AAAI 2024).

Each block splits its channels (units of a dense layer) into one group per class and
learns, from the image alone, to make the true class's group the most active: a softmax
over the groups' goodness, trained with cross-entropy (see `ChannelCompetitionLoss`).
There is no label in the input and no negative data, so it suits convolutional
networks, whose local filters could not see a label written into a few pixels. An image
is classified in one pass by the group goodness summed over blocks (their logits).
"""

from __future__ import annotations

from typing import Optional

import torch
from pydantic import Field

from locallearn.methods.base import Method
from locallearn.methods.ff_common import ScoreOptions, block_and_summed_scores, probe_features
from locallearn.nn.network import LocalNet
from locallearn.objectives.competition import ChannelCompetitionLoss
from locallearn.views.augment import AugmentOptions, augment
from locallearn.views.base import Views


class FFChannelwiseOptions(ScoreOptions):
    """`method.*` keys of `ff-channelwise`: the scoring (`ScoreOptions`), probes and augmentation."""

    probe_pool: int = Field(2, gt=0, description="Spatial outputs are average-pooled to at most this many positions per axis for probes.")
    augment: Optional[AugmentOptions] = Field(None, description="If set, each training image is one random view (the method.augment.* keys); null = as is.")


class FFChannelwise(Method):
    name = "ff-channelwise"
    Options = FFChannelwiseOptions
    primary = "goodness"

    def objective(self, index: int, num_blocks: int, width: int) -> ChannelCompetitionLoss:
        return ChannelCompetitionLoss(width, self.data.num_classes)

    def make_views(self, x, y, index, generator) -> Views:
        if self.options.augment is not None:
            x = augment(x, self.options.augment, self.data.pixel_low, self.data.pixel_high, generator)
        return Views(inputs=x, num_positive=x.shape[0], labels=y)

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        per_block = [block.objective.score(out) for block, out in zip(net.blocks, net.forward_blocks(x))]
        return block_and_summed_scores(net, per_block, self.options)

    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        return probe_features(net.forward_blocks(x), self.options.probe_pool)
