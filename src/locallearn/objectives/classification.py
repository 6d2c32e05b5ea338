"""A local classifier: a small head on the block's output trained with cross-entropy.

On a one-block network this is plain backprop; on many blocks it is greedy
supervised layer-wise training (every block learns to be classifiable by its head).
The head runs `convs` 3x3 conv + BatchNorm + ReLU layers on a spatial output, average-pools
it to `pool` x `pool` positions, then is linear, or an MLP with `hidden` ReLU layers (the
auxiliary heads of Belilovsky et al. 2019/2020, which greedy training needs to work well on
conv nets; the convs make DGL's deeper heads). A flat output meets the convs as a 1x1 image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from locallearn.nn.heads import conv_stack


class LocalClassifierLoss(nn.Module):
    """Cross-entropy of a head on the block's output (spatial outputs through `convs` convs, then pooled to `pool` x `pool`).

    Example:
        >>> objective = LocalClassifierLoss(in_features=1000, num_classes=10)
        >>> loss, metrics = objective(block_output, views)   # uses views.labels
    """

    def __init__(self, in_features: int, num_classes: int, pool: int = 1, hidden: list[int] = (), convs: int = 0):
        super().__init__()
        self.convs = conv_stack(in_features, convs)
        self.pool = pool
        widths = [in_features * pool * pool, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(widths[-1], num_classes)) if hidden else nn.Linear(widths[0], num_classes)

    def forward(self, out: torch.Tensor, views) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.score(out)
        loss = F.cross_entropy(logits, views.labels)
        accuracy = (logits.detach().argmax(dim=1) == views.labels).float().mean()
        return loss, {"loss": loss.detach(), "train_acc": accuracy}

    def score(self, out: torch.Tensor) -> torch.Tensor:
        if out.dim() == 2 and len(self.convs):
            out = out[:, :, None, None]  # an MLP block's output, read as a 1x1 image by the convs
        if out.dim() > 2:
            out = self.convs(out)
            out = F.adaptive_avg_pool2d(out, self.pool).flatten(1) if self.pool > 1 else out.flatten(2).mean(dim=2)
        return self.head(out)
