"""Reader for IDX files (the MNIST / Fashion-MNIST format), gzipped or raw.

Every way a file can be wrong (missing, corrupt gzip, bad magic, truncated, trailing
bytes, absurd header) is reported as one `DataError` line; no numpy, gzip, zlib or EOF
exception escapes.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from locallearn.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX type byte -> element type (multi-byte types are big-endian in the file).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIMS = 4
# A header claiming more data than this is corrupt, not a dataset: refuse before reading.
MAX_DATA_BYTES = 2**34
_CHUNK = 1 << 22


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file into an array of its declared shape and type (native byte order).

    Gzip is detected by its magic bytes, not by the file name. The payload must be
    exactly prod(dims) elements: a short or a long file is an error.
    """
    path = Path(path)
    compressed = False
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _parse(stream, path)
            return _parse(raw, path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as err:
        if compressed:
            raise DataError(f"{path}: corrupt gzip data ({_one_line(err)})") from None
        raise DataError(f"{path}: cannot read ({_one_line(err)})") from None


def _parse(stream: BinaryIO, path: Path) -> np.ndarray:
    magic = _read_up_to(stream, 4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in IDX_DTYPES or not 1 <= magic[3] <= MAX_DIMS:
        raise DataError(
            f"{path}: not an IDX file (magic bytes {magic.hex(' ') or 'none'}, expected 00 00 TT 0N"
            f" with type TT in {' '.join(f'{t:02x}' for t in IDX_DTYPES)} and N in 1..{MAX_DIMS})"
        )
    dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
    dims_bytes = _read_up_to(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header: expected {4 * ndim} bytes of dimensions, found {len(dims_bytes)}")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    expected = math.prod(dims) * dtype.itemsize
    if expected > MAX_DATA_BYTES:
        raise DataError(f"{path}: IDX header claims shape {dims} ({expected} bytes), more than {MAX_DATA_BYTES}; the file is corrupt")
    data = _read_up_to(stream, expected)
    if len(data) < expected:
        raise DataError(f"{path}: truncated: expected {expected} bytes of data, found {len(data)}")
    if stream.read(1):
        raise DataError(f"{path}: trailing bytes after the {expected} bytes of data that the header {dims} declares")
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_up_to(stream: BinaryIO, size: int) -> bytearray:
    """Read `size` bytes or until end of file, in chunks, so memory never exceeds what the file holds."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(_CHUNK, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
