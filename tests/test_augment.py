"""Batched augmentations: shapes, exact crops and flips, colour operations, reproducibility from the generator."""

from __future__ import annotations

import pytest
import torch

from helpers import random_images
from locallearn.views.augment import AugmentOptions, augment, color_jitter, crop_boxes, gaussian_blur, gray, resized_crop, rotate_hue, two_views

NONE = AugmentOptions(crop_scale=1.0, crop_ratio=1.0, flip=0.0, jitter=0.0, grayscale=0.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_full_box_is_the_identity_and_a_flipped_one_the_mirror():
    x = random_images(3, (2, 8, 6))
    full = torch.tensor([[1.0, 1.0, 0.0, 0.0]]).expand(3, 4)
    assert torch.allclose(resized_crop(x, full, torch.zeros(3, dtype=torch.bool)), x, atol=1e-6)
    flip = torch.tensor([True, False, True])
    out = resized_crop(x, full, flip)
    assert torch.allclose(out[flip], x[flip].flip(-1), atol=1e-6)
    assert torch.allclose(out[~flip], x[~flip], atol=1e-6)


def test_a_quadrant_box_samples_that_quadrant_at_the_right_places():
    """Bilinear sampling is exact on a ramp: output pixel i of the top-left quadrant, upsampled 2x, reads input position i/2 - 1/4."""
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    ramp = (3 * rows + cols).expand(2, 1, 8, 8)
    out = resized_crop(ramp, torch.tensor([[0.5, 0.5, -0.5, -0.5]]).expand(2, 4), torch.zeros(2, dtype=torch.bool))
    where = torch.arange(8.0) / 2 - 0.25
    expected = 3 * where[:, None] + where[None, :]
    assert torch.allclose(out[:, 0, 1:, 1:], expected[1:, 1:].expand(2, 7, 7), atol=1e-5)  # row/column 0 fall off the image edge


def test_shifts_translate_by_whole_pixels_and_fill_from_the_edge():
    x = random_images(400, (1, 8, 8))
    out = augment(x, AugmentOptions(crop_scale=1.0, crop_ratio=1.0, flip=0.0, jitter=0.0, shift=2), -1.0, 3.0, gen())
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    candidates = torch.stack([padded[:, :, 2 + dy : 10 + dy, 2 + dx : 10 + dx] for dy in range(-2, 3) for dx in range(-2, 3)], 1)
    matches = ((candidates - out.unsqueeze(1)).abs().flatten(2).amax(2) < 1e-5)  # (400, 25): which shift each image got
    assert (matches.sum(1) == 1).all()
    assert (matches.sum(0) > 0).all()  # every one of the 25 shifts occurs


def test_crop_boxes_lie_inside_the_image_with_the_asked_area_and_ratio():
    boxes = crop_boxes(4000, 28, 28, scale=0.3, ratio=2.0, generator=gen())
    w, h, cx, cy = boxes.unbind(1)
    assert ((cx - w >= -1 - 1e-6) & (cx + w <= 1 + 1e-6) & (cy - h >= -1 - 1e-6) & (cy + h <= 1 + 1e-6)).all()
    area = w * h
    assert area.min() >= 0.3 - 1e-6 and area.max() <= 1 + 1e-6
    ratio = w / h
    assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 2 + 1e-4
    assert area.std() > 0.1 and (cx.abs() > 0.1).any()  # they do vary


def test_views_are_reproducible_from_the_generator_alone():
    x = random_images(6, (3, 16, 16))
    o = AugmentOptions(blur=[1.0, 0.1], solarize=[0.0, 0.2], noise=0.05)
    a1, a2 = two_views(x, o, -1.0, 2.0, gen(5))
    b1, b2 = two_views(x, o, -1.0, 2.0, gen(5))
    c1, _ = two_views(x, o, -1.0, 2.0, gen(6))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert a1.shape == a2.shape == x.shape
    assert not torch.equal(a1, a2) and not torch.equal(a1, c1)


def test_no_augmentation_returns_the_images():
    x = random_images(4, (3, 8, 8)).clamp(-1, 2)
    assert torch.allclose(augment(x, NONE, -1.0, 2.0, gen()), x, atol=1e-5)


def test_grey_images_only_get_brightness_and_contrast_and_stay_in_range():
    x = torch.rand(64, 1, 10, 10, generator=gen()) * 3 - 1  # pixel range [-1, 2]
    views = two_views(x, AugmentOptions(jitter=1.0, brightness=0.8, contrast=0.8), -1.0, 2.0, gen())
    for v in views:
        assert v.shape == x.shape and v.min() >= -1 - 1e-5 and v.max() <= 2 + 1e-5


def test_colour_operations():
    u = torch.rand(5, 3, 4, 4, generator=gen())
    assert torch.allclose(rotate_hue(u, torch.zeros(5)), u, atol=1e-5)
    assert torch.allclose(rotate_hue(u, torch.ones(5)), u, atol=1e-5)  # a full turn
    turned = rotate_hue(u, torch.full((5,), 0.3))
    assert not torch.allclose(turned, u, atol=1e-2)
    assert torch.allclose(gray(turned), gray(u), atol=1e-3)  # luma is kept
    still = color_jitter(u, AugmentOptions(brightness=0, contrast=0, saturation=0, hue=0), gen())
    assert torch.allclose(still, u, atol=1e-6)
    grey_out = augment(u * 3 - 1, NONE.model_copy(update={"grayscale": 1.0}), -1.0, 2.0, gen())
    assert torch.allclose(grey_out[:, 0], grey_out[:, 1]) and torch.allclose(grey_out[:, 1], grey_out[:, 2])


def test_gaussian_blur_keeps_constants_and_smooths_each_image_by_its_own_sigma():
    flat = torch.full((2, 3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 2.0]), 2.0), flat, atol=1e-6)
    spike = torch.zeros(2, 1, 25, 25)
    spike[:, :, 12, 12] = 1.0
    out = gaussian_blur(spike, torch.tensor([0.1, 2.0]), 2.0)
    assert out[0, 0, 12, 12] > 0.99 and out[1, 0, 12, 12] < 0.05
    assert out[1, 0, 12, 14] / out[1, 0, 12, 12] == pytest.approx(torch.exp(torch.tensor(-0.5)).item(), rel=1e-3)  # exp(-d^2 / 2 sigma^2) at d = 2
    assert out.sum(dim=(1, 2, 3)).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


def test_options_reject_impossible_values():
    with pytest.raises(ValueError):
        AugmentOptions(flip=1.5)
    with pytest.raises(ValueError):
        AugmentOptions(blur=[0.5])
