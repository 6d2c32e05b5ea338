"""What a method hands to the blocks for one training step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Views:
    """The inputs of one step and the targets the local objectives need.

    `inputs` holds positives first (`num_positive` rows), then negatives if any;
    `labels` are the class labels of the positives where the method uses them.
    """

    inputs: torch.Tensor
    num_positive: int
    labels: Optional[torch.Tensor] = None
