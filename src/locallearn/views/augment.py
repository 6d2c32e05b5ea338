"""Batched image augmentations on the batch's device, for two-view self-supervised learning.

Every random number comes from the `torch.Generator` passed in (the engine seeds one per
epoch), drawn as whole-batch tensors: no per-image Python, and the same generator state
gives the same views. Images arrive normalised; colour operations work on the unit range
`(x - low) / (high - low)` and the result is mapped back.

The recipe of SimCLR / Barlow Twins, in order: random resized crop + horizontal flip (one
`grid_sample`), colour jitter (brightness, contrast, saturation, hue; the last two and
grayscale only for RGB), random grayscale, Gaussian blur, solarisation, additive Gaussian
noise. For grey digits (MNIST) use `flip=0` and leave the colour keys alone: brightness
and contrast are all the jitter a grey image gets.

Example:
    >>> v1, v2 = two_views(x, AugmentOptions(), low=-0.4, high=2.8, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

Probability = Annotated[float, Field(ge=0, le=1)]
PerView = Annotated[list[Probability], Field(min_length=2, max_length=2)]


class AugmentOptions(BaseModel):
    """`method.*.augment` keys: the probability and strength of each augmentation (each key's meaning is its description)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    crop_scale: float = Field(0.2, gt=0, le=1, description="Least area fraction of a random resized crop (1 with crop_ratio 1 = no crop).")
    crop_ratio: float = Field(4 / 3, ge=1, description="Largest aspect ratio of the crop (the least is its inverse).")
    flip: Probability = Field(0.5, description="Probability of a horizontal flip (0 for digits).")
    jitter: Probability = Field(0.8, description="Probability of colour jitter (brightness, contrast, saturation, hue together).")
    brightness: float = Field(0.4, ge=0, le=1, description="Jitter: brightness factor drawn in 1 +- this.")
    contrast: float = Field(0.4, ge=0, le=1, description="Jitter: contrast factor drawn in 1 +- this.")
    saturation: float = Field(0.2, ge=0, le=1, description="Jitter: saturation factor drawn in 1 +- this (RGB only).")
    hue: float = Field(0.1, ge=0, le=0.5, description="Jitter: hue rotation of up to +- this many turns (RGB only).")
    grayscale: Probability = Field(0.2, description="Probability of turning the view grey (RGB only).")
    blur: PerView = Field(default_factory=lambda: [0.0, 0.0], description="Gaussian blur probability for view 1 and view 2 (Barlow Twins: [1.0, 0.1]).")
    blur_sigma: float = Field(2.0, gt=0, description="Largest blur std in pixels (the least is a 20th of it).")
    solarize: PerView = Field(default_factory=lambda: [0.0, 0.0], description="Solarisation probability for view 1 and view 2 (Barlow Twins: [0.0, 0.2]).")
    noise: float = Field(0.0, ge=0, description="Std of additive Gaussian noise, in units of the pixel range.")
    shift: int = Field(0, ge=0, description="Largest translation in whole pixels, per image and axis (2 = Hinton's 25 jittered images); edge pixels fill the gap.")


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def coin(p: Tensor | float, n: int, generator: torch.Generator) -> Tensor:
    """(n,) booleans, true with probability `p` (a number or one per row)."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def crop_boxes(n: int, height: int, width: int, scale: float, ratio: float, generator: torch.Generator, max_scale: float = 1.0) -> Tensor:
    """(n, 4) crop boxes (half-width, half-height, centre x, centre y) in the [-1, 1] coordinates of `grid_sample`.

    The area is a uniform fraction in [scale, max_scale] of the image, the aspect ratio (in pixels)
    log-uniform in [1/ratio, ratio]; a side longer than the image is cut to it. Boxes lie
    inside the image.
    """
    area = uniform(n, scale, max_scale, generator) * height * width
    aspect = torch.exp(uniform(n, -math.log(ratio), math.log(ratio), generator))
    w = (torch.sqrt(area * aspect) / width).clamp(max=1.0)
    h = (torch.sqrt(area / aspect) / height).clamp(max=1.0)
    cx = (1 - w) * uniform(n, -1.0, 1.0, generator)
    cy = (1 - h) * uniform(n, -1.0, 1.0, generator)
    return torch.stack([w, h, cx, cy], dim=1)


def pixel_shifts(n: int, most: int, generator: torch.Generator) -> Tensor:
    """(n, 2) whole-pixel translations (x, y), each uniform in [-most, most]."""
    return torch.randint(-most, most + 1, (n, 2), generator=generator, device=generator.device).float()


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor, size: int | None = None) -> Tensor:
    """Each image's box (see `crop_boxes`) resized bilinearly to the image size (or `size` x `size`), mirrored where `flip`."""
    w, h, cx, cy = boxes.to(x.device).unbind(1)
    sign = 1.0 - 2.0 * flip.to(x.device).float()
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * sign, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape[:2]) + ([size, size] if size else list(x.shape[2:])), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gray(u: Tensor) -> Tensor:
    """(B, 1, H, W) luma of RGB (ITU-R 601, as torchvision) or the grey image itself."""
    if u.shape[1] == 1:
        return u
    return (u * u.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_INVERSE = torch.linalg.inv(YIQ)


def rotate_hue(u: Tensor, turns: Tensor) -> Tensor:
    """Rotate the chroma of RGB images by `turns` (B,) of a full turn, in YIQ space (luma kept)."""
    angle = 2 * math.pi * turns
    cos, sin, one, zero = torch.cos(angle), torch.sin(angle), torch.ones_like(angle), torch.zeros_like(angle)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], 1).view(-1, 3, 3)
    matrix = YIQ_INVERSE.to(u.device) @ rotation @ YIQ.to(u.device)  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, u)


def color_jitter(u: Tensor, o: AugmentOptions, generator: torch.Generator) -> Tensor:
    """Brightness, contrast, then (RGB) saturation and hue, with factors drawn per image; clamped to [0, 1] after each."""
    n = u.shape[0]

    def factor(strength: float) -> Tensor:
        return uniform(n, 1 - strength, 1 + strength, generator).to(u.device).view(n, 1, 1, 1)

    u = (u * factor(o.brightness)).clamp(0, 1)
    mean = gray(u).mean(dim=(1, 2, 3), keepdim=True)
    u = ((u - mean) * factor(o.contrast) + mean).clamp(0, 1)
    if u.shape[1] == 3:
        g = gray(u)
        u = ((u - g) * factor(o.saturation) + g).clamp(0, 1)
        u = rotate_hue(u, uniform(n, -o.hue, o.hue, generator).to(u.device)).clamp(0, 1)
    return u


def gaussian_blur(x: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Blur each image with its own Gaussian std `sigma` (B,) <= `max_sigma` pixels: two separable grouped convolutions."""
    b, c, h, w = x.shape
    radius = min(math.ceil(3 * max_sigma), (min(h, w) - 1) // 2)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma.to(x.device, x.dtype).view(b, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def augment(x: Tensor, o: AugmentOptions, low: float, high: float, generator: torch.Generator, blur: Tensor | float = 0.0, solarize: Tensor | float = 0.0,
            size: int | None = None, scale: tuple[float, float] | None = None) -> Tensor:
    """One random view of every image of a (B, C, H, W) batch; the `blur` / `solarize` probabilities may be one per image.

    `size` and `scale` (least and largest area fraction) override the crop's output side and
    `o.crop_scale`..1, for multi-crop's small crops."""
    n, channels, height, width = x.shape
    least, most = scale or (o.crop_scale, 1.0)
    boxes = crop_boxes(n, height, width, least, o.crop_ratio, generator, most)
    if o.shift:
        boxes[:, 2:] += pixel_shifts(n, o.shift, generator) * boxes.new_tensor([2 / width, 2 / height])
    x = resized_crop(x, boxes, coin(o.flip, n, generator), size)
    u = (x - low) / (high - low)

    def where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return torch.where(mask.to(x.device).view(n, 1, 1, 1), a, b)

    u = where(coin(o.jitter, n, generator), color_jitter(u, o, generator), u)
    if channels == 3:
        u = where(coin(o.grayscale, n, generator), gray(u).expand_as(u), u)
    if isinstance(blur, Tensor) or blur > 0:
        sigma = uniform(n, o.blur_sigma / 20, o.blur_sigma, generator)
        u = where(coin(blur, n, generator), gaussian_blur(u, sigma, o.blur_sigma), u)
    if isinstance(solarize, Tensor) or solarize > 0:
        u = where(coin(solarize, n, generator), torch.where(u < 0.5, u, 1 - u), u)
    if o.noise:
        u = u + o.noise * torch.randn(u.shape, generator=generator, device=generator.device).to(u.device)
    return u * (high - low) + low


def two_views(x: Tensor, o: AugmentOptions, low: float, high: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two independent random views of every image, made in one batched pass over 2B images."""
    n = x.shape[0]

    def per_row(p: list[float]) -> Tensor | float:
        return torch.tensor(p, device=generator.device).repeat_interleave(n) if max(p) > 0 else 0.0

    both = augment(torch.cat([x, x]), o, low, high, generator, per_row(o.blur), per_row(o.solarize))
    return both[:n], both[n:]
