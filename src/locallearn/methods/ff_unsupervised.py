"""Unsupervised Forward-Forward (Hinton 2022, section 3.2): real images against hybrid (or self-contrastive) negatives.

Each block learns to give real images high goodness and negatives low goodness, with
no label anywhere in training (unless `other_class` asks hybrids to mix two classes).
The negatives are hybrid images (`views.hybrid`) or, with `negatives=self-contrastive`,
images paired with other images (`views.pairs`, SCFF). The network has no classifier
of its own: accuracy is that of a linear softmax readout, trained without gradient into
the network, on the normalised activities of the last `readout_last` blocks (Hinton: 3).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from locallearn.methods.base import Method
from locallearn.methods.ff_common import FFOptions, ff_objective, probe_features
from locallearn.nn.network import LocalNet
from locallearn.objectives.goodness import FFGoodnessLoss
from locallearn.views.base import Views
from locallearn.views.hybrid import hybrid_images
from locallearn.views.pairs import self_contrastive_negatives


class FFUnsupervisedOptions(FFOptions):
    """`blurs` and `other_class` shape hybrid negatives; `readout_last`: blocks the readout reads."""

    negatives: Literal["hybrid", "self-contrastive"] = "hybrid"
    blurs: int = Field(10, ge=0)
    other_class: bool = False
    readout_last: int = Field(3, gt=0)


class FFUnsupervised(Method):
    name = "ff-unsupervised"
    Options = FFUnsupervisedOptions
    primary = "readout"

    @property
    def goodness_kind(self) -> str:
        return self.options.goodness

    @property
    def negatives(self) -> str | None:
        return "hybrid" if self.options.negatives == "hybrid" else None

    def objective(self, index: int, num_blocks: int, width: int) -> FFGoodnessLoss:
        return ff_objective(self.options, width)

    def make_views(self, x, y, index, generator) -> Views:
        o = self.options
        if o.negatives == "hybrid":
            negatives = hybrid_images(x, generator, o.blurs, y if o.other_class else None)[0]
        else:
            negatives = self_contrastive_negatives(x, generator)[0]
        return Views(inputs=torch.cat([x, negatives]), num_positive=x.shape[0])

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised activities of each block (spatial ones pooled): the readout's input."""
        return probe_features(net.forward_blocks(x), self.options.probe_pool)

    def readout_blocks(self, num_blocks: int) -> list[int]:
        return list(range(max(num_blocks - self.options.readout_last, 0), num_blocks))
