"""Tests of locallearn.data: file readers, lookup/download, batcher, splits. Offline and fast."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datafiles
from locallearn.data import load_dataset, pixel_mean_std
from locallearn.data import fetch, locate
from locallearn.data.batcher import Batcher
from locallearn.data.cifar import load_cifar10
from locallearn.data.idx import read_idx
from locallearn.data.locate import RemoteFile, find_dataset
from locallearn.data.mnist import load_idx_dataset
from locallearn.errors import DataError, UsageError


def single_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([7, 0, 255], dtype=np.uint8),
        np.arange(-6, 6, dtype=np.int16).reshape(3, 4),
        np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 2, 2, 2),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
)
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    read = read_idx(datafiles.write_idx(tmp_path / "file", array, gz=gz))
    assert read.shape == array.shape and read.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(read, array)


def test_idx_detects_gzip_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(datafiles.write_idx(tmp_path / "plain-name", array, gz=True)), array)
    np.testing.assert_array_equal(read_idx(datafiles.write_idx(tmp_path / "raw.gz", array, gz=False)), array)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x01\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="not an IDX file") as err:
        read_idx(path)
    assert str(path) in single_line(err)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated(tmp_path: Path, gz: bool) -> None:
    data = datafiles.idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))[:-100]
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match="truncated: expected 7840 bytes of data, found 7740"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_trailing_bytes(tmp_path: Path, gz: bool) -> None:
    data = datafiles.idx_bytes(np.zeros((4,), dtype=np.uint8)) + b"\x00"
    path = tmp_path / "long"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(datafiles.idx_bytes(np.arange(200, dtype=np.uint8))))
    blob[20:30] = b"\xff" * 10
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)
    path.write_bytes(bytes(blob[:15]))
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)


def test_idx_absurd_dims_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2**20, 2**20, 2**20) + b"\x00" * 16)
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path)


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nothing")


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "file"


def read_or_data_error(path: Path, blob: bytes) -> None:
    """Reading `blob` must return an array or raise DataError; anything else fails the test."""
    path.write_bytes(blob)
    try:
        assert isinstance(read_idx(path), np.ndarray)
    except DataError as err:
        assert "\n" not in str(err)


@given(blob=st.binary(max_size=300))
def test_idx_arbitrary_bytes_never_crash(fuzz_path: Path, blob: bytes) -> None:
    read_or_data_error(fuzz_path, blob)


@given(blob=st.binary(max_size=64).map(lambda body: b"\x00\x00" + body))
def test_idx_arbitrary_headers_never_crash(fuzz_path: Path, blob: bytes) -> None:
    read_or_data_error(fuzz_path, blob)


VALID_IDX = datafiles.idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    gz=st.booleans(),
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=8),
)
def test_idx_mutated_file_never_crashes(
    fuzz_path: Path, gz: bool, cut: int, flips: list[tuple[int, int]], tail: bytes
) -> None:
    blob = bytearray(gzip.compress(VALID_IDX, mtime=0) if gz else VALID_IDX)
    for position, value in flips:
        if position < len(blob):
            blob[position] = value
    read_or_data_error(fuzz_path, bytes(blob[: max(0, len(blob) - cut)]) + tail)


# --------------------------------------------------------------------------- MNIST format


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_like_round_trip(tmp_path: Path, gz: bool) -> None:
    train_y = np.arange(30, dtype=np.uint8) % 10
    test_y = np.arange(12, dtype=np.uint8) % 10
    datafiles.write_mnist_like(tmp_path, 0, 0, gz=gz, labels=(train_y, test_y))
    raw = load_idx_dataset(tmp_path)
    assert raw.train_x.shape == (30, 1, 28, 28) and raw.train_x.dtype == np.uint8
    assert raw.test_x.shape == (12, 1, 28, 28)
    assert raw.train_y.dtype == np.int64
    np.testing.assert_array_equal(raw.train_y, train_y)
    np.testing.assert_array_equal(raw.test_y, test_y)


def test_mnist_mixed_plain_and_gz(tmp_path: Path) -> None:
    datafiles.write_mnist_like(tmp_path, 20, 10, gz=True)
    gz_file = tmp_path / "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz_file.read_bytes()))
    gz_file.unlink()
    assert len(load_idx_dataset(tmp_path).test_y) == 10


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 255, (20, 28, 28), dtype=np.uint8), rng.integers(0, 255, (5, 28, 28), dtype=np.uint8))
    labels = (np.zeros(19, dtype=np.uint8), np.zeros(5, dtype=np.uint8))
    datafiles.write_mnist_like(tmp_path, 0, 0, images=images, labels=labels)
    with pytest.raises(DataError, match="image/label count mismatch") as err:
        load_idx_dataset(tmp_path)
    assert "train-labels-idx1-ubyte.gz" in single_line(err)


def test_mnist_label_out_of_range(tmp_path: Path) -> None:
    labels = (np.array([0, 3, 10], dtype=np.uint8), np.array([1], dtype=np.uint8))
    datafiles.write_mnist_like(tmp_path, 0, 0, labels=labels)
    with pytest.raises(DataError, match=r"label out of range: found 0\.\.10, expected 0\.\.9"):
        load_idx_dataset(tmp_path)


def test_mnist_wrong_image_shape(tmp_path: Path) -> None:
    datafiles.write_mnist_like(tmp_path, 4, 2)
    datafiles.write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 32, 32), dtype=np.uint8), gz=True)
    with pytest.raises(DataError, match=r"shape \(N, 28, 28\)"):
        load_idx_dataset(tmp_path)


def test_mnist_missing_file(tmp_path: Path) -> None:
    datafiles.write_mnist_like(tmp_path, 4, 2)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        load_idx_dataset(tmp_path)


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("layout", ["parent", "batches-folder", "archive"])
def test_cifar10_folder_and_archive(tmp_path: Path, layout: str) -> None:
    written = datafiles.write_cifar10(tmp_path, n_per_batch=6, archive=layout == "archive")
    raw = load_cifar10(written if layout == "batches-folder" else tmp_path)
    assert raw.train_x.shape == (30, 3, 32, 32) and raw.train_x.dtype == np.uint8
    assert raw.test_x.shape == (6, 3, 32, 32)
    assert raw.train_y.dtype == np.int64 and set(raw.train_y.tolist()) <= set(range(10))
    # the bar drawn for each label is where the label says, so pixels and labels stayed paired
    bar_rows = raw.train_x[:, 0, :, 16].argmax(axis=1)
    np.testing.assert_array_equal(bar_rows, raw.train_y * 3 + 1)


def test_cifar10_same_content_from_folder_and_archive(tmp_path: Path) -> None:
    datafiles.write_cifar10(tmp_path / "folder", n_per_batch=3, seed=4)
    datafiles.write_cifar10(tmp_path / "archive", n_per_batch=3, seed=4, archive=True)
    a, b = load_cifar10(tmp_path / "folder"), load_cifar10(tmp_path / "archive")
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)


class _RunsShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_malicious_pickle(tmp_path: Path) -> None:
    batches = datafiles.write_cifar10(tmp_path, n_per_batch=2)
    marker = tmp_path / "pwned"
    (batches / "data_batch_3").write_bytes(pickle.dumps({b"data": _RunsShellCommand(marker), b"labels": [0]}))
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR-10 batch .*refused to load .*system") as err:
        load_cifar10(tmp_path)
    single_line(err)
    assert not marker.exists()


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"garbage", "not a CIFAR-10 batch"),
        (pickle.dumps([1, 2, 3]), "expected a dict"),
        (datafiles.cifar_batch_bytes(np.zeros((2, 100), np.uint8), [0, 1]), r"shape \(N, 3072\)"),
        (datafiles.cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0]), "count mismatch"),
        (datafiles.cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0, 10]), "label out of range"),
    ],
)
def test_cifar10_bad_batches(tmp_path: Path, blob: bytes, message: str) -> None:
    batches = datafiles.write_cifar10(tmp_path, n_per_batch=2)
    (batches / "test_batch").write_bytes(blob)
    with pytest.raises(DataError, match=message) as err:
        load_cifar10(tmp_path)
    single_line(err)


def test_cifar10_corrupt_archive(tmp_path: Path) -> None:
    archive = datafiles.write_cifar10(tmp_path, n_per_batch=2, archive=True)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: corrupt or unreadable archive"):
        load_cifar10(tmp_path)


# --------------------------------------------------------------------------- lookup and download


@pytest.fixture(autouse=True)
def isolated_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real home, cache, $LOCALLEARN_DATA, Debian folder or network: everything under tmp_path."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("LOCALLEARN_DATA", raising=False)
    for name in locate.REMOTE_FILES:
        monkeypatch.setitem(locate.DEBIAN_FOLDERS, name, tmp_path / "debian" / name)
        monkeypatch.setitem(locate.MIRRORS, name, ((tmp_path / "no-mirror").as_uri() + "/",))
    return home


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_machine: Path) -> None:
    explicit, env, debian = tmp_path / "explicit", tmp_path / "env", tmp_path / "debian" / "mnist"
    cache = isolated_machine / ".cache" / "locallearn" / "mnist"
    for folder in (explicit, env / "mnist", cache, debian):
        datafiles.write_mnist_like(folder, 2, 2)
    monkeypatch.setenv("LOCALLEARN_DATA", str(env))
    assert find_dataset("mnist", explicit) == explicit
    assert find_dataset("mnist", None) == env / "mnist"
    monkeypatch.delenv("LOCALLEARN_DATA")
    assert find_dataset("mnist", tmp_path / "empty") == cache
    for path in cache.iterdir():
        path.unlink()
    assert find_dataset("mnist", None) == debian


def test_lookup_env_folder_itself_and_xdg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datafiles.write_mnist_like(tmp_path / "env", 2, 2)
    monkeypatch.setenv("LOCALLEARN_DATA", str(tmp_path / "env"))
    assert find_dataset("fashion-mnist", None) == tmp_path / "env"
    monkeypatch.delenv("LOCALLEARN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    datafiles.write_mnist_like(tmp_path / "xdg" / "locallearn" / "fashion-mnist", 2, 2)
    assert find_dataset("fashion-mnist", None) == tmp_path / "xdg" / "locallearn" / "fashion-mnist"


def test_lookup_cifar10_archive(tmp_path: Path) -> None:
    datafiles.write_cifar10(tmp_path / "data" / "cifar10", n_per_batch=2, archive=True)
    assert find_dataset("cifar10", tmp_path / "data") == tmp_path / "data" / "cifar10"


def make_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, md5_override: str | None = None) -> Path:
    """A file:// mirror of tiny MNIST files, with the checksum table set to their sums (or `md5_override`)."""
    mirror = datafiles.write_mnist_like(tmp_path / "mirror", 30, 10, gz=True)
    remote_files = tuple(
        RemoteFile(
            path.name,
            md5_override or hashlib.md5(path.read_bytes()).hexdigest(),
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(mirror.iterdir())
    )
    monkeypatch.setitem(locate.REMOTE_FILES, "mnist", remote_files)
    dead = (tmp_path / "dead-mirror").as_uri() + "/"
    monkeypatch.setitem(locate.MIRRORS, "mnist", (dead, mirror.as_uri() + "/"))
    return mirror


def test_download_from_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_machine: Path) -> None:
    mirror = make_mirror(tmp_path, monkeypatch)
    folder = find_dataset("mnist", None)
    assert folder == isolated_machine / ".cache" / "locallearn" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in mirror.iterdir())
    for path in folder.iterdir():
        assert path.read_bytes() == (mirror / path.name).read_bytes()
    assert len(load_dataset("mnist", val_size=5, download=False).train_y) == 25


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_machine: Path
) -> None:
    make_mirror(tmp_path, monkeypatch, md5_override="0" * 32)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        find_dataset("mnist", None)
    single_line(err)
    assert list((isolated_machine / ".cache" / "locallearn" / "mnist").iterdir()) == []


def test_download_sha256_mismatch_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mirror(tmp_path, monkeypatch)
    wrong = tuple(RemoteFile(f.name, f.md5, "0" * 64) for f in locate.REMOTE_FILES["mnist"])
    monkeypatch.setitem(locate.REMOTE_FILES, "mnist", wrong)
    with pytest.raises(DataError, match="sha256"):
        find_dataset("mnist", None)


def test_offline_with_nothing_names_the_folders(tmp_path: Path, isolated_machine: Path) -> None:
    with pytest.raises(DataError) as err:
        find_dataset("fashion-mnist", tmp_path / "mine")
    message = single_line(err)
    for folder in (tmp_path / "mine", isolated_machine / ".cache" / "locallearn" / "fashion-mnist", tmp_path / "debian"):
        assert str(folder) in message
    assert "download failed" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_download_disabled(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="download disabled") as err:
        find_dataset("cifar10", None, download=False)
    assert "cifar-10-python.tar.gz" in single_line(err)


def test_fetch_main_prints_folder_or_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    datafiles.write_mnist_like(tmp_path / "data", 2, 2)
    assert fetch.main(["mnist", "--data-dir", str(tmp_path / "data")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "data")
    assert fetch.main(["cifar10"]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1].startswith("error: cifar10 not found")
    assert all(line.startswith("locallearn: downloading") for line in err_lines[:-1])


def test_ensure_dataset_falls_back_to_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = []

    def fake_apt_install(package: str) -> bool:
        installed.append(package)
        datafiles.write_mnist_like(locate.DEBIAN_FOLDERS["fashion-mnist"], 2, 2)
        return True

    monkeypatch.setattr(fetch, "can_apt_install", lambda: True)
    monkeypatch.setattr(fetch, "apt_install", fake_apt_install)
    assert fetch.ensure_dataset("fashion-mnist") == locate.DEBIAN_FOLDERS["fashion-mnist"]
    assert installed == ["dataset-fashion-mnist"]
    with pytest.raises(DataError):
        fetch.ensure_dataset("mnist")
    assert installed == ["dataset-fashion-mnist"]


# --------------------------------------------------------------------------- Batcher


def numbered(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] = [i, i], y[i] = i: every batch shows which examples it holds."""
    return torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2), torch.arange(n)


@pytest.mark.parametrize("shuffle", [True, False])
def test_batcher_covers_every_example_once(shuffle: bool) -> None:
    batcher = Batcher(*numbered(23), batch_size=5, shuffle=shuffle, seed=3)
    batches = list(batcher.batches(epoch=0))
    assert len(batches) == len(batcher) == 5
    assert [len(y) for _, y, _ in batches] == [5, 5, 5, 5, 3]
    for x, y, index in batches:
        torch.testing.assert_close(x[:, 0].long(), y)
        torch.testing.assert_close(index, y)
    seen = torch.cat([y for _, y, _ in batches])
    assert sorted(seen.tolist()) == list(range(23))
    assert (seen.tolist() == list(range(23))) != shuffle


def test_batcher_order_is_a_function_of_seed_and_epoch() -> None:
    def order(seed: int, epoch: int) -> list[int]:
        return torch.cat([y for _, y, _ in Batcher(*numbered(50), batch_size=8, seed=seed).batches(epoch)]).tolist()

    assert order(1, 4) == order(1, 4)
    assert order(1, 4) != order(1, 5)
    assert order(1, 4) != order(2, 4)


def test_batcher_drop_last() -> None:
    batcher = Batcher(*numbered(23), batch_size=5, drop_last=True)
    sizes = [len(y) for _, y, _ in batcher.batches(0)]
    assert len(batcher) == 4 and sizes == [5, 5, 5, 5]
    assert len(Batcher(*numbered(20), batch_size=5, drop_last=True)) == 4


# --------------------------------------------------------------------------- load_dataset


@pytest.fixture
def mnist_folder(tmp_path: Path) -> Path:
    return datafiles.write_mnist_like(tmp_path / "mnist", n_train=60, n_test=20, seed=1)


def test_load_dataset_splits(mnist_folder: Path) -> None:
    raw = load_idx_dataset(mnist_folder)
    splits = load_dataset("mnist", mnist_folder, val_size=15, train_subset=30, normalize=False)
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (30, 15, 20)
    assert splits.train_x.dtype == torch.float32 and splits.train_y.dtype == torch.int64
    assert splits.image_shape == (1, 28, 28) and splits.num_classes == 10
    # validation = the LAST 15 official training examples, train = the first 30: disjoint
    torch.testing.assert_close(splits.val_x, torch.from_numpy(raw.train_x[45:]).float() / 255)
    torch.testing.assert_close(splits.train_y, torch.from_numpy(raw.train_y[:30]))
    assert (splits.mean, splits.std, splits.pixel_low, splits.pixel_high) == (0.0, 1.0, 0.0, 1.0)
    assert splits.train_x.min() >= 0 and splits.train_x.max() <= 1


def test_load_dataset_normalisation_uses_training_part(mnist_folder: Path) -> None:
    splits = load_dataset("mnist", mnist_folder, val_size=10)
    assert abs(splits.train_x.mean().item()) < 1e-5
    assert splits.train_x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    raw_train = load_idx_dataset(mnist_folder).train_x[:50]
    assert splits.mean == pytest.approx(raw_train.mean() / 255)
    assert splits.std == pytest.approx(raw_train.std() / 255)
    assert splits.pixel_low == pytest.approx(-splits.mean / splits.std)
    assert splits.pixel_high == pytest.approx((1 - splits.mean) / splits.std)
    assert splits.train_x.min().item() >= splits.pixel_low - 1e-5


def test_pixel_mean_std_of_constant_images() -> None:
    assert pixel_mean_std(np.full((3, 1, 2, 2), 51, dtype=np.uint8)) == (pytest.approx(0.2), 1.0)


def test_load_dataset_cifar10(tmp_path: Path) -> None:
    datafiles.write_cifar10(tmp_path, n_per_batch=4, archive=True)
    splits = load_dataset("cifar10", tmp_path, val_size=5)
    assert splits.train_x.shape == (15, 3, 32, 32) and splits.test_x.shape == (4, 3, 32, 32)
    assert splits.image_shape == (3, 32, 32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_size": 60}, r"data.val_size=60 must be in 0..59"),
        ({"val_size": 10, "train_subset": 51}, r"data.train_subset=51 must be in 1..50"),
        ({"val_size": 10, "train_subset": 0}, r"data.train_subset=0 must be in 1..50"),
    ],
)
def test_load_dataset_bad_sizes(mnist_folder: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_dataset("mnist", mnist_folder, **kwargs)


def test_load_dataset_names() -> None:
    with pytest.raises(UsageError, match="data.name=imagefolder needs data.dir"):
        load_dataset("imagefolder")
    with pytest.raises(UsageError, match="unknown dataset 'svhn'; valid: mnist, fashion-mnist, cifar10, imagefolder"):
        load_dataset("svhn")
