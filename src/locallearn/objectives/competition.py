"""Channel-wise competition (Papachristodoulou et al., 2024): each class owns a group of channels.

A block's goodness for class c is the mean square of the activities of channel group c
(over all positions); a softmax over these goodnesses is trained with cross-entropy to
pick the true class. No label enters the input and no negative data is needed: the
other classes' groups are the negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from locallearn.errors import UsageError
from locallearn.objectives.goodness import grouped_goodness


class ChannelCompetitionLoss(nn.Module):
    """Cross-entropy over the goodness of `num_classes` channel groups of the block's output.

    Example:
        >>> objective = ChannelCompetitionLoss(width=80, num_classes=10)   # 8 channels per class
        >>> loss, metrics = objective(block_output, views)                  # uses views.labels
    """

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        if width % num_classes:
            raise UsageError(f"channel-wise competition needs every block's width divisible by the {num_classes} classes; a block has width {width}")
        self.num_classes = num_classes

    def forward(self, out: torch.Tensor, views) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scores = self.score(out)
        loss = F.cross_entropy(scores, views.labels)
        accuracy = (scores.detach().argmax(dim=1) == views.labels).float().mean()
        return loss, {"loss": loss.detach(), "train_acc": accuracy, "goodness": scores.detach().mean()}

    def score(self, out: torch.Tensor) -> torch.Tensor:
        """(B, num_classes): the mean squared activity of each class's channel group."""
        return grouped_goodness(out, "mean", "example", self.num_classes)
