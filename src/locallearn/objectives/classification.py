"""A local classifier: a linear head on the block's output trained with cross-entropy.

On a one-block network this is plain backprop; on many blocks it is greedy
supervised layer-wise training (every block learns to be linearly classifiable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalClassifierLoss(nn.Module):
    """Cross-entropy of a linear head on the block's output, averaged over positions when spatial.

    Example:
        >>> objective = LocalClassifierLoss(in_features=1000, num_classes=10)
        >>> loss, metrics = objective(block_output, views)   # uses views.labels
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(in_features, num_classes)

    def forward(self, out: torch.Tensor, views) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.score(out)
        loss = F.cross_entropy(logits, views.labels)
        accuracy = (logits.detach().argmax(dim=1) == views.labels).float().mean()
        return loss, {"loss": loss.detach(), "train_acc": accuracy}

    def score(self, out: torch.Tensor) -> torch.Tensor:
        return self.head(out.flatten(2).mean(dim=2) if out.dim() > 2 else out)
