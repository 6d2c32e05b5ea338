"""Datasets: train / validation / test splits, in memory or streamed from an image folder.

`load_dataset` finds the files (see `locallearn.data.locate`), reads and checks them,
holds the LAST `val_size` official training examples out for validation (model
selection never looks at the test set) and normalises with statistics of the
training part only. `data.name=imagefolder` instead lists a folder of image files
(ImageNet layout) whose images are decoded batch by batch (`locallearn.data.imagefolder`).

Both kinds (`DataSplits`, `ImageFolderData`) offer what training and evaluation use:
`num_classes`, `image_shape`, `pixel_low`, `pixel_high`, `to(device)`;
`split_size(split)`, `labels(split, limit)` and `eval_batches(split, batch_size, limit)`
for `split` in train / val / test (`limit`: a fixed subset of that many examples, the
same for every seed); and `train_batches(data, ...)` below for the training batches.

`DATASETS` is the one list of dataset names (config's `data.name` reads it) and how each loads;
the modules of this package never import the package itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from locallearn.data.batcher import Batcher
from locallearn.data.cifar import load_cifar10
from locallearn.data.cifar import NUM_CLASSES as CIFAR10_CLASSES
from locallearn.data.imagefolder import load_imagefolder
from locallearn.data.locate import find_dataset
from locallearn.data.mnist import NUM_CLASSES as IDX_CLASSES
from locallearn.data.mnist import load_idx_dataset
from locallearn.data.splits import DataSplits, RawData, pixel_mean_std, split_raw
from locallearn.errors import UsageError

__all__ = ["DATASETS", "DATASET_NAMES", "NUM_CLASSES", "DataSplits", "RawData", "load_dataset", "pixel_mean_std", "train_batches"]


@dataclass(frozen=True)
class InMemory:
    """A dataset whose files (found or downloaded by `locate.find_dataset`) are read whole into memory."""

    read: Callable[[Path], RawData]
    num_classes: int

    def load(self, name, data_dir, val_size, train_subset, normalize, download, **_) -> DataSplits:
        return split_raw(name, self.read(find_dataset(name, data_dir, download)), self.num_classes, val_size, train_subset, normalize)


@dataclass(frozen=True)
class ImageFolder:
    """An ImageNet-layout folder of image files, listed and split now and decoded batch by batch."""

    num_classes: None = None

    def load(self, name, data_dir, val_size, train_subset, normalize, download, image_size, workers, crop_scale):
        return load_imagefolder(data_dir, val_size, train_subset, image_size, workers, normalize, crop_scale)


DATASETS: dict[str, InMemory | ImageFolder] = {
    "mnist": InMemory(load_idx_dataset, IDX_CLASSES),
    "fashion-mnist": InMemory(load_idx_dataset, IDX_CLASSES),
    "cifar10": InMemory(load_cifar10, CIFAR10_CLASSES),
    "imagefolder": ImageFolder(),
}
DATASET_NAMES = tuple(name for name, dataset in DATASETS.items() if dataset.num_classes)  # those of known classes
(NUM_CLASSES,) = {DATASETS[name].num_classes for name in DATASET_NAMES}  # all of them have ten


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    val_size: int = 5000,
    train_subset: int | None = None,
    normalize: bool = True,
    download: bool = True,
    image_size: int = 224,
    workers: int = 4,
    crop_scale: float = 0.08,
):
    """Load dataset `name` of `DATASETS` and split it (see `split_raw`).

    `imagefolder` (`data_dir` required) returns an `ImageFolderData` instead: its files
    are listed and split now, and decoded at `image_size` by `workers` DataLoader
    processes as batches are asked for (see `locallearn.data.imagefolder`).
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return DATASETS[name].load(name, data_dir, val_size, train_subset, normalize, download,
                               image_size=image_size, workers=workers, crop_scale=crop_scale)


def train_batches(data, batch_size: int, seed: int, rank: int = 0, world: int = 1):
    """The training batch source of `data`: `len()` batches per epoch, `batches(epoch, first)` -> (x, y, index).

    In-memory splits: a `Batcher`; an image folder: its `ImageFolderBatches` (same interface, same epoch order).
    """
    if not isinstance(data, DataSplits) and hasattr(data, "train_batches"):
        return data.train_batches(batch_size, seed, rank, world)
    return Batcher(data.train_x, data.train_y, batch_size, shuffle=True, seed=seed, rank=rank, world=world)
