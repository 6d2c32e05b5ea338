"""CIFAR-10 from the official "python version": the extracted folder or the .tar.gz itself.

The batches are pickles, and unpickling can run arbitrary code, so they are read with
`SafeUnpickler`, which only resolves the few numpy names that rebuild an array.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from locallearn.data.splits import RawData
from locallearn.errors import DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

BATCHES_FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)

NUM_CLASSES = 10  # CIFAR-10


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals an official CIFAR batch needs (numpy array rebuilding)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: not part of a CIFAR batch") from None


def find_cifar10_source(folder: Path) -> Path | None:
    """Where CIFAR-10 is under `folder`: the batches folder (`folder` or its child) or the archive; else None."""
    folder = Path(folder)
    for batches in (folder, folder / BATCHES_FOLDER):
        if all((batches / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
            return batches
    archive = folder / ARCHIVE_NAME
    return archive if archive.is_file() else None


def load_cifar10(folder: Path) -> RawData:
    """Load the five training batches and the test batch; images (N, 3, 32, 32) uint8, labels int64."""
    source = find_cifar10_source(folder)
    if source is None:
        raise DataError(
            f"{folder}: CIFAR-10 not found: expected {BATCHES_FOLDER}/ (data_batch_1..5, test_batch) or {ARCHIVE_NAME}"
        )
    blobs = _read_archive(source) if source.is_file() else _read_folder(source)
    train = [_parse_batch(blobs[name], f"{source}:{name}") for name in TRAIN_BATCHES]
    test_x, test_y = _parse_batch(blobs[TEST_BATCH], f"{source}:{TEST_BATCH}")
    return RawData(
        train_x=np.concatenate([x for x, _ in train]),
        train_y=np.concatenate([y for _, y in train]),
        test_x=test_x,
        test_y=test_y,
    )


def _read_folder(folder: Path) -> dict[str, bytes]:
    blobs = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        try:
            blobs[name] = (folder / name).read_bytes()
        except OSError as err:
            raise DataError(f"{folder / name}: cannot read ({err.strerror or err})") from None
    return blobs


def _read_archive(archive: Path) -> dict[str, bytes]:
    """Read the batches straight out of the .tar.gz, without extracting anything to disk."""
    blobs = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for name in (*TRAIN_BATCHES, TEST_BATCH):
                member = f"{BATCHES_FOLDER}/{name}"
                try:
                    stream = tar.extractfile(member)
                except KeyError:
                    stream = None
                if stream is None:
                    raise DataError(f"{archive}: no file {member} in the archive; is it the official {ARCHIVE_NAME}?")
                blobs[name] = stream.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: corrupt or unreadable archive ({' '.join(str(err).split())})") from None
    return blobs


def _parse_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - a malformed pickle can fail in any way; all mean "not a batch"
        raise DataError(f"{where}: not a CIFAR-10 batch ({type(err).__name__}: {' '.join(str(err).split())})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = batch[b"data"], batch[b"labels"]
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: b'data' must be a uint8 array of shape (N, {pixels}), found {found}")
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise DataError(f"{where}: b'labels' must be a list of ints")
    if len(labels) != len(data):
        raise DataError(f"{where}: image/label count mismatch: {len(labels)} labels for {len(data)} images")
    if labels and not 0 <= min(labels) <= max(labels) < NUM_CLASSES:
        raise DataError(f"{where}: label out of range: found {min(labels)}..{max(labels)}, expected 0..{NUM_CLASSES - 1}")
    return data.reshape(-1, *IMAGE_SHAPE), np.asarray(labels, dtype=np.int64)
