"""A dataset read whole into memory (`RawData`) and its train / validation / test splits (`DataSplits`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from locallearn.data.imagefolder import fixed_subset
from locallearn.errors import UsageError


@dataclass
class RawData:
    """A dataset as read from its files: uint8 images (N, C, H, W) and int64 labels (N,), as numpy arrays."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


@dataclass
class DataSplits:
    """Float32 images (N, C, H, W), normalised as `(x / 255 - mean) / std`, and int64 labels.

    `pixel_low` / `pixel_high` are the normalised values of raw pixels 0 and 255, for
    writing into images (e.g. a label overlay) on the same scale as the data.
    """

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: float
    std: float
    pixel_low: float
    pixel_high: float

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits with every tensor on `device` (the whole dataset lives there during training)."""
        moved = {name: getattr(self, name).to(device) for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
        return replace(self, **moved)

    def split_size(self, split: str) -> int:
        """Examples in `split` ('train', 'val' or 'test')."""
        return getattr(self, f"{split}_y").shape[0]

    def labels(self, split: str, limit: int | None = None) -> Tensor:
        """Labels of `split` (of its fixed subset of `limit` examples), in `eval_batches` order."""
        y = getattr(self, f"{split}_y")
        subset = _subset(self.split_size(split), limit, y.device)
        return y if subset is None else y.index_select(0, subset)

    def eval_batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) slices of `split` (of its fixed subset of `limit` examples) in order; at least one, maybe empty."""
        x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
        subset = _subset(self.split_size(split), limit, y.device)
        for start in range(0, max(x.shape[0] if subset is None else subset.shape[0], 1), batch_size):
            if subset is None:
                yield x[start : start + batch_size], y[start : start + batch_size]
            else:
                part = subset[start : start + batch_size]
                yield x.index_select(0, part), y.index_select(0, part)


def _subset(n: int, limit: int | None, device: torch.device) -> Tensor | None:
    """The positions of `fixed_subset` as a tensor on `device` (None: all)."""
    subset = fixed_subset(n, limit)
    return None if subset is None else torch.from_numpy(subset).to(device)


def split_raw(name: str, raw: RawData, num_classes: int, val_size: int = 5000, train_subset: int | None = None, normalize: bool = True) -> DataSplits:
    """`raw` split: validation is the last `val_size` examples of the official training set; training is
    the first `train_subset` of the rest (all when None). With `normalize`, one scalar mean and std are
    computed over the training part (after the split) in x/255 units; otherwise images are just x/255."""
    n_official = len(raw.train_x)
    if not 0 <= val_size < n_official:
        raise UsageError(f"data.val_size={val_size} must be in 0..{n_official - 1}: {name} has {n_official} training examples")
    n_rest = n_official - val_size
    n_train = n_rest if train_subset is None else train_subset
    if not 1 <= n_train <= n_rest:
        raise UsageError(
            f"data.train_subset={train_subset} must be in 1..{n_rest}: {name} has {n_rest} training examples "
            f"left after holding out data.val_size={val_size}"
        )
    train_x, train_y = raw.train_x[:n_train], raw.train_y[:n_train]
    val_x, val_y = raw.train_x[n_rest:], raw.train_y[n_rest:]

    mean, std = 0.0, 1.0
    if normalize:
        mean, std = pixel_mean_std(train_x)

    def images(x: np.ndarray) -> Tensor:
        return torch.from_numpy(x).float().div_(255.0).sub_(mean).div_(std)

    def labels(y: np.ndarray) -> Tensor:
        return torch.tensor(y, dtype=torch.int64)

    return DataSplits(
        train_x=images(train_x),
        train_y=labels(train_y),
        val_x=images(val_x),
        val_y=labels(val_y),
        test_x=images(raw.test_x),
        test_y=labels(raw.test_y),
        num_classes=num_classes,
        image_shape=tuple(raw.train_x.shape[1:]),
        mean=mean,
        std=std,
        pixel_low=(0.0 - mean) / std,
        pixel_high=(1.0 - mean) / std,
    )


def pixel_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of all pixels of uint8 `images`, in x/255 units (std 1 for constant images).

    Computed exactly from a 256-bin histogram, without a float copy of the images.
    """
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean = float(counts @ values / counts.sum())
    if np.count_nonzero(counts) <= 1:
        return mean, 1.0
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))
