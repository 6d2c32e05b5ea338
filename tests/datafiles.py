"""Write tiny datasets in the official file formats, for tests.

- `write_mnist_like(folder, n_train, n_test)`: the four MNIST/Fashion-MNIST IDX files.
- `write_cifar10(folder, n_per_batch)`: the CIFAR-10 python batches, as a folder or as the .tar.gz.

Images carry a class-dependent pattern (a bright bar whose position is the label)
over noise, so that even a small classifier learns them in a few steps.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_TYPE_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
NUM_CLASSES = 10


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` encoded as an IDX file (uncompressed): magic, big-endian dims, big-endian data."""
    array = np.asarray(array)
    code = IDX_TYPE_CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    Path(path).write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return Path(path)


def patterned_images(labels: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """uint8 images of `shape` (per image, channels first when 3-d): noise plus a bright bar at a row set by the label."""
    images = rng.integers(0, 64, size=(len(labels), *shape), dtype=np.uint8)
    height = shape[-2]
    rows_per_class = height // NUM_CLASSES
    for label in range(NUM_CLASSES):
        chosen = (np.asarray(labels) % NUM_CLASSES) == label
        start = label * rows_per_class + (height - NUM_CLASSES * rows_per_class) // 2
        images[chosen, ..., start : start + max(1, rows_per_class), 2:-2] = 230
    return images


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)


def write_mnist_like(
    folder: str | Path,
    n_train: int,
    n_test: int,
    gz: bool = True,
    seed: int = 0,
    images: tuple[np.ndarray, np.ndarray] | None = None,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write the four MNIST-format files (`.gz` when `gz`) into `folder`; return the folder.

    `labels` / `images`: optional (train, test) pairs written instead of generated ones
    (their lengths then replace `n_train` / `n_test`); generated images follow the labels.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = (balanced_labels(n_train, rng), balanced_labels(n_test, rng))
    if images is None:
        images = tuple(patterned_images(split_labels, (28, 28), rng) for split_labels in labels)
    suffix = ".gz" if gz else ""
    for split, split_images, split_labels in zip(("train", "test"), images, labels):
        write_idx(folder / (MNIST_FILES[f"{split}_images"] + suffix), np.asarray(split_images, dtype=np.uint8), gz)
        write_idx(folder / (MNIST_FILES[f"{split}_labels"] + suffix), np.asarray(split_labels, dtype=np.uint8), gz)
    return folder


def cifar_batch_bytes(data: np.ndarray, labels: list[int], batch_label: bytes = b"test batch") -> bytes:
    """A pickled batch laid out like the official files: a dict with bytes keys, the array rebuilt
    through `numpy.core.multiarray._reconstruct` (the name the official Python 2 pickles use)."""
    batch = {
        b"batch_label": batch_label,
        b"labels": list(labels),
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    blob = pickle.dumps(batch, protocol=3)  # protocol 3: bytes without _codecs, globals by name
    return blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar10(folder: str | Path, n_per_batch: int, archive: bool = False, seed: int = 0) -> Path:
    """Write CIFAR-10 batches (5 train + test, `n_per_batch` images each) into `folder`.

    Writes `folder/cifar-10-batches-py/` or, with `archive`, only `folder/cifar-10-python.tar.gz`.
    Returns the batches folder or the archive.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    blobs = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = balanced_labels(n_per_batch, rng)
        images = patterned_images(labels, (3, 32, 32), rng)
        blobs[name] = cifar_batch_bytes(images.reshape(n_per_batch, -1), [int(v) for v in labels], name.encode())
    blobs["batches.meta"] = pickle.dumps({b"label_names": [f"class_{i}".encode() for i in range(10)]}, protocol=3)
    if archive:
        path = folder / "cifar-10-python.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        return path
    path = folder / "cifar-10-batches-py"
    path.mkdir(exist_ok=True)
    for name, blob in blobs.items():
        (path / name).write_bytes(blob)
    return path
