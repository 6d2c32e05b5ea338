"""Hybrid-image negatives for unsupervised FF (Hinton 2022, section 3.2).

A mask has large regions of ones and zeros: an image of random bits blurred `blurs`
times with the filter [1/4, 1/2, 1/4] along both axes, then thresholded at 0.5. A
negative is `mask * x + (1 - mask) * x'` for another image `x'` of the batch: it has the
short-range correlations of real images but not their long-range ones.

Everything is made for a whole batch at once, on the generator's device, from the
generator alone, so the same seed gives the same negatives.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=32)
def blur_matrix(size: int, blurs: int, device: torch.device) -> Tensor:
    """(size, size) matrix applying the [1/4, 1/2, 1/4] filter `blurs` times along one axis, edge pixels replicated."""
    step = torch.diag(torch.full((size,), 0.5, dtype=torch.float64))
    step += torch.diag(torch.full((size - 1,), 0.25, dtype=torch.float64), 1) + torch.diag(torch.full((size - 1,), 0.25, dtype=torch.float64), -1)
    step[0, 0] += 0.25
    step[-1, -1] += 0.25
    return torch.linalg.matrix_power(step, blurs).float().to(device)


def blur(images: Tensor, blurs: int) -> Tensor:
    """(N, H, W) images blurred `blurs` times along both axes: two matrix products, whatever `blurs` is."""
    rows = blur_matrix(images.shape[-2], blurs, images.device)
    cols = blur_matrix(images.shape[-1], blurs, images.device)
    return rows @ images @ cols.T


def random_bits(n: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """(n, H, W) fair random bits (0.0 / 1.0), 16 from each random integer: 5x cheaper than a float per pixel."""
    count, device = n * size[0] * size[1], generator.device
    words = torch.randint(0, 1 << 16, (-(-count // 16),), generator=generator, device=device, dtype=torch.int32)
    bits = (words.unsqueeze(1) >> torch.arange(16, device=device, dtype=torch.int32)) & 1
    return bits.flatten()[:count].view(n, *size).float()


def hybrid_masks(n: int, size: tuple[int, int], blurs: int, generator: torch.Generator) -> Tensor:
    """(n, 1, H, W) masks of 0.0 / 1.0: random bits, blurred `blurs` times, thresholded at 0.5."""
    return (blur(random_bits(n, size, generator), blurs) > 0.5).unsqueeze(1).float()


def partner_indices(n: int, generator: torch.Generator, labels: Tensor | None = None) -> Tensor:
    """For each of `n` examples, the index of another one, drawn uniformly.

    With `labels`, the partner has another label wherever the batch holds one. A batch
    of one example is its own partner.
    """
    device = generator.device
    if labels is None:
        shift = torch.randint(1, max(n, 2), (n,), generator=generator, device=device)
        return (torch.arange(n, device=device) + shift) % n
    labels = labels.to(device)
    allowed = labels[:, None] != labels[None, :]
    allowed |= ~allowed.any(dim=1, keepdim=True) & ~torch.eye(n, dtype=torch.bool, device=device)
    allowed |= ~allowed.any(dim=1, keepdim=True)
    return torch.multinomial(allowed.float(), 1, generator=generator).squeeze(1)


def hybrid_images(x: Tensor, generator: torch.Generator, blurs: int, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Hybrid negatives of a (B, C, H, W) batch, with their masks (B, 1, H, W) and partner indices (B,).

    `hybrid = mask * x + (1 - mask) * x[partners]`, exactly one of the two pixels (`torch.lerp`
    is exact at weights 0 and 1); with `labels`, partners have another class.

    Example:
        >>> negatives, masks, partners = hybrid_images(x, torch.Generator().manual_seed(0), blurs=10)
    """
    masks = hybrid_masks(x.shape[0], tuple(x.shape[-2:]), blurs, generator).to(x.device)
    partners = partner_indices(x.shape[0], generator, labels).to(x.device)
    return torch.lerp(x[partners], x, masks), masks, partners
