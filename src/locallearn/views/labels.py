"""Supervised FF inputs: the label written into the image, and wrong labels for negatives."""

from __future__ import annotations

import torch


def overlay_labels(images: torch.Tensor, labels: torch.Tensor, num_classes: int, low: float, high: float) -> torch.Tensor:
    """Copy of `images` with the first `num_classes` pixels replaced by a one-hot label.

    `low`/`high` are the values of a black/white pixel after normalisation, so the
    label looks like image content (Hinton 2022, section 3.3).
    """
    out = images.clone()
    flat = out.flatten(1)  # a view; unlike view(B, -1), also of an empty batch
    flat[:, :num_classes] = low
    flat[torch.arange(flat.shape[0], device=flat.device), labels] = high
    return out


def overlay_neutral(images: torch.Tensor, num_classes: int, low: float, high: float) -> torch.Tensor:
    """Copy of `images` with the label pixels all a tenth of the way from `low` to `high`: the "neutral label" of the paper."""
    out = images.clone()
    out.flatten(1)[:, :num_classes] = low + 0.1 * (high - low)
    return out


def overlay_every_label(images: torch.Tensor, num_classes: int, low: float, high: float) -> torch.Tensor:
    """(B, ...) images -> (B*C, ...): each image with each label, image-major, for batched classification."""
    repeated = images.repeat_interleave(num_classes, dim=0)
    labels = torch.arange(num_classes, device=images.device).repeat(images.shape[0])
    return overlay_labels(repeated, labels, num_classes, low, high)


def uniform_wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator, count: int = 1) -> torch.Tensor:
    """(B, count) distinct labels per example, a uniform draw without replacement from the classes other than the true one."""
    device = generator.device
    first = torch.randint(1, num_classes, labels.shape, generator=generator, device=device)
    shifts = first.unsqueeze(1)
    if count > 1:  # the other shifts: the first `count - 1` of a random order of those not yet drawn
        keys = torch.rand(labels.shape[0], num_classes - 1, generator=generator, device=device)
        keys.scatter_(1, shifts - 1, float("inf"))
        shifts = torch.cat([shifts, keys.argsort(dim=1)[:, : count - 1] + 1], dim=1)
    return (labels.unsqueeze(1) + shifts.to(labels.device)) % num_classes


def hard_wrong_labels(scores: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, count: int = 1) -> torch.Tensor:
    """(B, count) distinct wrong labels per example, sampled in proportion to the model's belief softmax(scores), true label excluded."""
    probs = torch.softmax(scores.float(), dim=1)
    probs[torch.arange(labels.shape[0], device=labels.device), labels] = 0
    probs = probs + 1e-12  # a belief that is certain of the true label still leaves every wrong label to draw
    probs[torch.arange(labels.shape[0], device=labels.device), labels] = 0
    return torch.multinomial(probs, count, generator=generator)
