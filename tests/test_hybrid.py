"""Negatives without labels: hybrid-image masks and mixes, and self-contrastive pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from helpers import random_images
from locallearn.views.hybrid import blur, hybrid_images, hybrid_masks, partner_indices, random_bits
from locallearn.views.pairs import self_contrastive_negatives


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blur_by_convolution(images: torch.Tensor, blurs: int) -> torch.Tensor:
    """The definition: convolve with [1/4, 1/2, 1/4] along rows, then columns, `blurs` times (edges replicated)."""
    kernel = torch.tensor([0.25, 0.5, 0.25])
    x = images.unsqueeze(1)
    for _ in range(blurs):
        x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 3))
        x = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 1))
    return x.squeeze(1)


def transitions(masks: torch.Tensor) -> torch.Tensor:
    """Mean number of 0/1 changes between neighbouring pixels per mask."""
    m = masks.float()
    return ((m[..., 1:, :] != m[..., :-1, :]).sum() + (m[..., :, 1:] != m[..., :, :-1]).sum()) / m.shape[0]


@given(st.integers(0, 12), st.integers(1, 30), st.integers(1, 30))
def test_blur_is_the_repeated_quarter_half_quarter_filter(blurs, height, width):
    images = torch.rand(3, height, width, generator=seeded())
    torch.testing.assert_close(blur(images, blurs), blur_by_convolution(images, blurs), atol=1e-6, rtol=0)


def test_random_bits_are_fair_independent_and_reproducible():
    bits = random_bits(1000, (28, 28), seeded())
    assert bits.shape == (1000, 28, 28) and set(bits.unique().tolist()) == {0.0, 1.0}
    assert abs(bits.mean() - 0.5) < 0.005
    centred = bits - 0.5
    for neighbour in (centred.roll(1, dims=2), centred.roll(1, dims=1), centred.roll(1, dims=0)):
        assert abs((centred * neighbour).mean()) < 0.005  # no correlation with the next pixel, row or image
    assert torch.equal(bits, random_bits(1000, (28, 28), seeded()))
    assert random_bits(3, (5, 7), seeded()).shape == (3, 5, 7)  # sizes that are not a multiple of 16 bits


def test_masks_are_binary_with_both_parts_in_typical_masks():
    masks = hybrid_masks(500, (28, 28), 10, seeded())
    assert masks.shape == (500, 1, 28, 28) and set(masks.unique().tolist()) == {0.0, 1.0}
    ones = masks.mean(dim=(1, 2, 3))
    assert ((ones > 0.05) & (ones < 0.95)).float().mean() > 0.9  # both the image and its partner show
    assert 0.4 < ones.mean() < 0.6


def test_masks_are_the_thresholded_blur_of_random_bits_reproducible_from_the_seed():
    masks = hybrid_masks(8, (28, 28), 6, seeded(3))
    bits = random_bits(8, (28, 28), seeded(3))
    assert torch.equal(masks.squeeze(1), (blur_by_convolution(bits, 6) > 0.5).float())
    assert torch.equal(masks, hybrid_masks(8, (28, 28), 6, seeded(3)))
    assert not torch.equal(masks, hybrid_masks(8, (28, 28), 6, seeded(4)))


def test_more_blurs_make_larger_regions():
    counts = [transitions(hybrid_masks(200, (28, 28), blurs, seeded())) for blurs in (0, 2, 10)]
    assert counts[0] > 1.5 * counts[1] > 3 * counts[2]


def test_a_hybrid_is_pixelwise_one_of_its_two_sources():
    x = random_images(32)
    hybrid, masks, partners = hybrid_images(x, seeded(), blurs=10)
    assert (partners != torch.arange(32)).all()
    expected = torch.where(masks.bool().expand_as(x), x, x[partners])
    assert torch.equal(hybrid, expected)
    from_first = (hybrid == x).flatten(1).float().mean(1)
    from_second = (hybrid == x[partners]).flatten(1).float().mean(1)
    assert torch.equal(from_first + from_second, torch.ones(32))  # random images never share a pixel value
    assert (from_first > 0).float().mean() > 0.9 and (from_second > 0).float().mean() > 0.9


def test_hybrids_of_colour_images_use_one_mask_for_all_channels():
    x = random_images(16, shape=(3, 32, 32))
    hybrid, masks, partners = hybrid_images(x, seeded(), blurs=8)
    from_first = hybrid == x
    assert torch.equal(from_first, masks.bool().expand_as(x))


def test_hybrids_are_reproducible_from_the_seed():
    x = random_images(16)
    first, second = hybrid_images(x, seeded(5), 10), hybrid_images(x, seeded(5), 10)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], hybrid_images(x, seeded(6), 10)[0])


def test_partners_of_another_class_when_asked_and_possible():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3])
    for seed in range(20):
        partners = partner_indices(8, seeded(seed), labels)
        assert (labels[partners] != labels).all()
    same = partner_indices(4, seeded(), torch.zeros(4, dtype=torch.long))
    assert (same != torch.arange(4)).all()  # one class only: any other image
    assert partner_indices(1, seeded()).tolist() == [0]


def test_partners_are_uniform_over_the_other_examples():
    counts = torch.zeros(5, 5)
    for seed in range(2000):
        counts[torch.arange(5), partner_indices(5, seeded(seed))] += 1
    assert counts.diag().sum() == 0
    off_diagonal = counts[~torch.eye(5, dtype=torch.bool)]
    assert off_diagonal.min() > 400 and off_diagonal.max() < 600  # 500 expected


def test_self_contrastive_negatives_pair_each_image_with_another():
    x = random_images(12)
    negatives, partners = self_contrastive_negatives(x, seeded())
    assert (partners != torch.arange(12)).all()
    torch.testing.assert_close(negatives, (x + x[partners]) / 2)
