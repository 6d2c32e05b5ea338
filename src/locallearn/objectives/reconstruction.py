"""InfoPro's information-preserving term (Wang et al. 2021): a local loss plus a reconstruction of the input.

Greedy local losses throw away what their block's objective does not need yet, and later
blocks can never get it back. InfoPro adds to each local loss a decoder that must rebuild
the step's input images from the block's output, so that the block keeps information about
its input. The decoder belongs to the block's objective, so its loss stays local like the
rest. InfoPro compares sigmoid pixels in [0, 1] by binary cross-entropy; here the images
are normalised, so the term is the mean squared error to the (normalised, augmented) input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from locallearn.errors import UsageError
from locallearn.nn.heads import Decoder


class InformationPreserving(nn.Module):
    """`objective(out, views)` + `weight` * MSE(decoder(out), views.inputs); its metrics gain `recon_loss`.

    `metrics["loss"]` stays the wrapped objective's own loss. `score` (a classifier's
    logits) is the wrapped objective's.

    Example:
        >>> objective = InformationPreserving(LocalClassifierLoss(64, 10), in_channels=64, image_channels=1, weight=1.0)
        >>> loss, metrics = objective(block_output, views)   # block_output (B, 64, H, W); views.inputs the images
    """

    def __init__(self, objective: nn.Module, in_channels: int, image_channels: int, weight: float):
        super().__init__()
        self.objective = objective
        self.decoder = Decoder(in_channels, image_channels)
        self.weight = weight

    def forward(self, out: torch.Tensor, views) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if out.dim() != 4:
            raise UsageError("method.recon_weight needs blocks with image outputs (B, C, H, W), as vgg, conv or resnet layers give; use method.recon_weight=0")
        loss, metrics = self.objective(out, views)
        images = views.inputs
        recon = F.mse_loss(self.decoder(out, images.shape[-2:]), images)
        return loss + self.weight * recon, {**metrics, "recon_loss": recon.detach()}

    def score(self, out: torch.Tensor) -> torch.Tensor:
        return self.objective.score(out)


def with_reconstruction(objective: nn.Module, in_channels: int, image_channels: int, weight: float) -> nn.Module:
    """`objective` with InfoPro's reconstruction term of `weight` added; `objective` itself when `weight` is 0."""
    return InformationPreserving(objective, in_channels, image_channels, weight) if weight else objective
