"""MNIST and Fashion-MNIST from their four official IDX files (each plain or `.gz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from locallearn.data.splits import RawData
from locallearn.data.idx import read_idx
from locallearn.errors import DataError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SIZE = (28, 28)

NUM_CLASSES = 10  # MNIST and Fashion-MNIST


def idx_file(folder: Path, stem: str) -> Path | None:
    """The file `stem` or `stem.gz` in `folder` (the plain one when both exist), or None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def has_idx_dataset(folder: Path) -> bool:
    return all(idx_file(folder, stem) is not None for stem in IDX_FILES.values())


def load_idx_dataset(folder: Path) -> RawData:
    """Read and check the four files: images (N, 28, 28) uint8, labels (N,) in 0..9.

    Images come back as (N, 1, 28, 28) uint8, labels as int64.
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    for key, stem in IDX_FILES.items():
        path = idx_file(folder, stem)
        if path is None:
            raise DataError(f"{folder}: missing {stem} (or {stem}.gz); expected the four official MNIST-format files there")
        paths[key] = path
    train_x, train_y = _read_split(paths["train_images"], paths["train_labels"])
    test_x, test_y = _read_split(paths["test_images"], paths["test_labels"])
    return RawData(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SIZE or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, {IMAGE_SIZE[0]}, {IMAGE_SIZE[1]}), "
            f"found {images.dtype} of shape {images.shape}"
        )
    labels = read_idx(labels_path)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{labels_path}: expected a 1-d array of integer labels, found {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path}: image/label count mismatch: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{labels_path}: label out of range: found {labels.min()}..{labels.max()}, expected 0..{NUM_CLASSES - 1}")
    return images[:, None], labels.astype(np.int64)
