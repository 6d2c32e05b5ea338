"""Self-contrastive negatives (Self-Contrastive Forward-Forward, Chen et al. 2024).

A positive is an image paired with itself, a negative an image paired with another
image of the batch. SCFF feeds the pair `[a; b]` to the first layer, which computes
`W1 a + W2 b`; here the two halves share their weights, so the pair enters as the
image-shaped `(a + b) / 2` (the positive is then the image itself) and any layer type
and input shape work unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from locallearn.views.hybrid import partner_indices


def pair(a: Tensor, b: Tensor) -> Tensor:
    """The network input of the pair (a, b)."""
    return (a + b) / 2


def self_contrastive_negatives(x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Each image of the batch paired with another one, and the partners' indices."""
    partners = partner_indices(x.shape[0], generator).to(x.device)
    return pair(x, x[partners]), partners
