"""Multi-crop views (Caron et al. 2020, 2021): two large crops plus several small, low-resolution ones.

The large crops are the usual two views (`two_views`), the step's input. The small crops of
all images are one batch of their own (`MultiCropViews.local`, crop-major: crop 1 of every
image, then crop 2...), so each crop size is one batched forward pass; only the large crops
go through a teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from locallearn.views.augment import AugmentOptions, augment, two_views
from locallearn.views.base import Views


@dataclass
class MultiCropViews(Views):
    """`Views` of the two large crops, plus `local`: the small crops (count * N, C, size, size), or their features
    at the current block (each block's objective replaces them with its detached output)."""

    local: Optional[Tensor] = None


def multi_crop(x: Tensor, o: AugmentOptions, low: float, high: float, generator: torch.Generator, count: int, size: int, scale: tuple[float, float]) -> MultiCropViews:
    """Two large views of every image (`o`) and `count` small `size` x `size` crops covering `scale` of its area."""
    v1, v2 = two_views(x, o, low, high, generator)
    local = augment(x.repeat(count, 1, 1, 1), o, low, high, generator, size=size, scale=scale) if count else None
    return MultiCropViews(inputs=torch.cat([v1, v2]), num_positive=x.shape[0], local=local)
