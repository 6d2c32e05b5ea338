"""Find a dataset's files on this machine, or download them from the official mirrors.

Lookup order (DESIGN.md, "Data on a machine"):

1. the `data_dir` argument (`--data-dir` / `data.dir`), the folder itself or `data_dir/<name>`;
2. `$LOCALLEARN_DATA`, the folder itself or `$LOCALLEARN_DATA/<name>`;
3. the cache folder `~/.cache/locallearn/<name>` (`$XDG_CACHE_HOME/locallearn/<name>` when set);
4. the Debian data package folder (Fashion-MNIST: `/usr/share/datasets/fashion-mnist`);
5. a download from the official mirrors into the cache folder, each file checked against
   its official MD5 (and SHA-256 where known) and written atomically.

The tables below (`MIRRORS`, `REMOTE_FILES`, `DEBIAN_FOLDERS`) are module-level so that
tests can point them at local `file://` folders.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from locallearn.atomic import write_atomic
from locallearn.data.cifar import ARCHIVE_NAME, find_cifar10_source
from locallearn.data.mnist import IDX_FILES, has_idx_dataset
from locallearn.errors import DataError, UsageError

DOWNLOAD_TIMEOUT_S = 10
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as published: its name and official checksums."""

    name: str
    md5: str
    sha256: str | None = None


# Official MD5 sums, as listed by torchvision (datasets/mnist.py and datasets/cifar.py).
# SHA-256 is left None where no official value is known to us.
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    "fashion-mnist": (
        RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    "cifar10": (RemoteFile(ARCHIVE_NAME, "c58f30108f718f92721af3b95e74349a"),),
}

# Base URLs, tried in order; a file's URL is base + file name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

DEBIAN_FOLDERS: dict[str, Path] = {
    "fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("/usr/share/datasets/mnist"),
}
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


def find_dataset(name: str, data_dir: str | os.PathLike | None, download: bool = True) -> Path:
    """The folder holding dataset `name`, downloading it into the cache folder as a last resort.

    Raises `DataError` (one line: where it looked, why the download failed, how to get
    the files) when the dataset is nowhere and cannot be downloaded.
    """
    if name not in REMOTE_FILES:
        raise UsageError(f"unknown dataset {name!r}; valid: {', '.join(REMOTE_FILES)}")
    searched = candidate_folders(name, data_dir)
    for folder in searched:
        if has_dataset(name, folder):
            return folder
    cache = cache_folder(name)
    if not download:
        failure = "download disabled"
    else:
        try:
            download_dataset(name, cache)
            return cache
        except DataError as err:
            failure = f"download failed: {err}"
    raise DataError(f"{name} not found (looked in {', '.join(map(str, searched))}) and {failure}; {how_to_get(name)}")


def candidate_folders(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """The folders searched for `name`, in lookup order, without repeats."""
    folders = []
    for root in (data_dir, os.environ.get("LOCALLEARN_DATA") or None):
        if root is not None:
            root = Path(root).expanduser()
            folders += [root, root / name]
    folders.append(cache_folder(name))
    if name in DEBIAN_FOLDERS:
        folders.append(DEBIAN_FOLDERS[name])
    return list(dict.fromkeys(folders))


def cache_folder(name: str) -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "locallearn" / name


def has_dataset(name: str, folder: Path) -> bool:
    """Whether every file `name` needs is in `folder` (IDX files plain or .gz; CIFAR folder or archive)."""
    try:
        if not folder.is_dir():
            return False
        if name == "cifar10":
            return find_cifar10_source(folder) is not None
        return has_idx_dataset(folder)
    except OSError:  # e.g. a folder we may not read: it does not have the dataset for us
        return False


def how_to_get(name: str) -> str:
    if name == "cifar10":
        files = f"{ARCHIVE_NAME} or its extracted folder"
    else:
        files = ", ".join(IDX_FILES.values()) + ", each plain or .gz"
    hint = f"put the official files ({files}) in one of those folders or pass --data-dir DIR"
    if name in DEBIAN_PACKAGES:
        hint = f"run `apt-get install {DEBIAN_PACKAGES[name]}`, or {hint}"
    return f"to get it: {hint}"


def download_dataset(name: str, folder: Path) -> None:
    """Download every file of `name` that `folder` lacks, trying the mirrors in order."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {folder} ({err.strerror or err})") from None
    for remote in REMOTE_FILES[name]:
        target = folder / remote.name
        if target.is_file() or (target.suffix == ".gz" and target.with_suffix("").is_file()):
            continue
        errors = []
        for base in MIRRORS[name]:
            url = base + remote.name
            try:
                _download_verified(url, target, remote)
                break
            except DataError as err:
                errors.append(str(err))
        else:
            raise DataError("; ".join(errors) or f"no mirror for {remote.name}")


def _download_verified(url: str, target: Path, remote: RemoteFile) -> None:
    """Stream `url` into `target` atomically; a failure or a checksum mismatch leaves no file."""
    print(f"locallearn: downloading {url}", file=sys.stderr)

    def fetch(tmp: str) -> None:
        md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            while chunk := response.read(_CHUNK):
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != remote.md5:
            raise DataError(f"{url}: checksum mismatch (md5 {md5.hexdigest()}, expected {remote.md5})")
        if remote.sha256 is not None and sha256.hexdigest() != remote.sha256:
            raise DataError(f"{url}: checksum mismatch (sha256 {sha256.hexdigest()}, expected {remote.sha256})")

    try:
        write_atomic(target, fetch)
    except urllib.error.HTTPError as err:
        raise DataError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise DataError(f"{url}: {' '.join(str(reason).split())}") from None
