"""Image folders too large for memory (ImageNet layout), decoded by DataLoader workers.

Layout::

    DIR/train/<class>/*.jpg|jpeg|png|...    the training files; classes = sorted folder names
    DIR/val/<class>/*.jpg|...               the test split (ImageNet's official validation set)

Splits: `test` is `DIR/val` (ImageNet results are reported on it). `val` (model selection)
is `val_size` training files held out by a fixed seeded choice (the same for every
`train.seed`, at most half of the training files); `train` is the first `train_subset` of
the remaining files in a fixed seeded order (so smaller subsets are nested in larger ones,
and every class is represented), kept in file order.

Training batches (`ImageFolderBatches`) have the interface of `locallearn.data.batcher.Batcher`:
the epoch order is Batcher's (a pure function of `(seed, epoch)`), cut into global batches of
`world * batch_size` of which rank `rank` takes `tensor_split(world)[rank]` and decodes only
that. Each file is decoded in a worker with PIL: RGB, a random resized crop (area 8%-100%,
aspect ratio 3/4-4/3, the centre crop when ten tries fail) to `image_size`, and a horizontal
flip with probability 1/2, all drawn from a generator seeded with `(seed, epoch, position)`,
so a run resumed in the middle of an epoch sees exactly the same batches. Workers return
uint8 tensors; the conversion to float and the per-channel normalisation happen on the device.

Evaluation (`ImageFolderData.eval_batches`) streams any split without randomness: the shorter
side resized to `round(image_size * 256 / 224)`, then the centre `image_size` square.

Normalisation uses ImageNet's per-channel mean and std. `pixel_low`/`pixel_high` (the
normalised values of black and white, for methods that write into images or jitter colours)
are the green (middle) channel's: a single number cannot be exact for all three channels,
and the red and blue ones are within 5% of it.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from locallearn.data.batcher import BatchPlan
from locallearn.errors import DataError, RunError, UsageError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOLDOUT_SEED = 20240521  # the validation hold-out and the training order: fixed, independent of train.seed
SUBSET_SEED = 7  # the fixed subsets of `eval_batches(..., limit=N)`
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
EVAL_RESIZE = 256 / 224


def _require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("data.name=imagefolder needs Pillow: pip install 'locallearn[imagefolder]'") from None
    return Image


# ---------------------------------------------------------------------------------------------
# Listing the files


def _image_files(folder: Path) -> list[str]:
    """Image files under `folder` (recursively, hidden entries skipped), sorted, as paths relative to `folder`."""
    found = []
    for current, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(current, folder)
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(EXTENSIONS):
                found.append(name if rel == "." else os.path.join(rel, name))
    return found


def _class_folders(split: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split) if entry.is_dir() and not entry.name.startswith("."))


def scan_split(root: Path, split: str, classes: list[str] | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(classes, files relative to `root`, labels) of `root/split`; `classes` given: those of the training split."""
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: an image folder needs {root}/train/<class>/ and {root}/val/<class>/ (the test split)")
    names = _class_folders(folder)
    if not names:
        loose = _image_files(folder)
        hint = f"; its {len(loose)} images must be sorted into one folder per class" if loose else ""
        raise DataError(f"{folder} has no class folders{hint} (expected {folder}/<class>/<image>)")
    if classes is None:
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{folder} has class folder(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
                            f"that {root / 'train'} does not have")
    label_of = {name: i for i, name in enumerate(classes)}
    files: list[str] = []
    labels: list[int] = []
    for name in names:
        found = _image_files(folder / name)
        if not found:
            raise DataError(f"class folder {folder / name} has no images ({', '.join(EXTENSIONS)})")
        files += [os.path.join(split, name, f) for f in found]
        labels += [label_of[name]] * len(found)
    return classes, files, np.asarray(labels, dtype=np.int64)


def _path_array(files: list[str]) -> np.ndarray:
    """Paths as one fixed-width bytes array: no per-path Python objects for worker processes to copy."""
    return np.array([os.fsencode(f) for f in files], dtype=bytes) if files else np.zeros(0, dtype="S1")


def fixed_subset(n: int, limit: int | None) -> np.ndarray | None:
    """Positions of a fixed random subset of `limit` out of `n`, ascending (None: all)."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng(SUBSET_SEED).permutation(n)[:limit])


# ---------------------------------------------------------------------------------------------
# Decoding (runs in DataLoader workers)


@dataclass
class _Failure:
    """A file that could not be decoded, sent back from a worker instead of an exception (whose message would carry a traceback)."""

    message: str


def random_resized_box(width: int, height: int, rng: np.random.Generator, min_area: float = CROP_SCALE[0]) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop: area fraction in [min_area, 1], log-uniform aspect ratio in CROP_RATIO.

    Ten tries, as Inception / torchvision do; if none fits, the largest centre crop with
    the aspect ratio clamped into CROP_RATIO.
    """
    area = width * height
    log_ratio = (np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(min_area, 1.0)
        ratio = np.exp(rng.uniform(*log_ratio))
        w = int(round(np.sqrt(target * ratio)))
        h = int(round(np.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif in_ratio > CROP_RATIO[1]:
        w, h = int(round(height * CROP_RATIO[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _decode(path: str, size: int, train: bool, rng: np.random.Generator | None, min_area: float = CROP_SCALE[0]) -> np.ndarray:
    """(size, size, 3) uint8 of one file: training crop + flip, or resize + centre crop."""
    Image = _require_pillow()
    with Image.open(path) as img:
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        width, height = img.size
        if train:
            left, top, w, h = random_resized_box(width, height, rng, min_area)
            box = (left, top, left + w, top + h)
        else:
            scale = round(size * EVAL_RESIZE) / min(width, height)  # shorter side -> round(size * 256 / 224)
            side = size / scale  # the crop's side in the file's pixels, at most the shorter side
            left = min(max(round((round(width * scale) - size) / 2) / scale, 0.0), width - side)
            top = min(max(round((round(height * scale) - size) / 2) / scale, 0.0), height - side)
            box = (left, top, left + side, top + side)
        out = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
        if train and rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if out.mode != "RGB":
            out = out.convert("RGB")
        return np.asarray(out, dtype=np.uint8)


class ImageFiles(torch.utils.data.Dataset):
    """Whole batches of files, decoded: `dataset[(epoch, positions)]` -> (uint8 (B, 3, S, S), labels, positions).

    One item is one batch (the DataLoader runs with `batch_size=None` over a sampler of
    batches), so the training process runs no per-example Python. `epoch` None: evaluation
    (resize + centre crop); otherwise the training crop of `(seed, epoch, position)`.
    """

    def __init__(self, root: Path, paths: np.ndarray, labels: np.ndarray, size: int, seed: int = 0, min_area: float = CROP_SCALE[0]):
        self.root, self.paths, self.labels, self.size, self.seed, self.min_area = str(root), paths, labels, size, seed, min_area

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int | None, np.ndarray]):
        epoch, positions = item
        out = np.empty((len(positions), self.size, self.size, 3), dtype=np.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's warnings about odd EXIF data or palettes, once per worker and epoch
            for k, position in enumerate(positions):
                path = os.path.join(self.root, os.fsdecode(self.paths[position]))
                rng = None if epoch is None else np.random.default_rng([self.seed, epoch, int(position)])
                try:
                    out[k] = _decode(path, self.size, epoch is not None, rng, self.min_area)
                except UsageError:
                    raise
                except Exception as err:  # noqa: BLE001 -- any failure to decode is this file's fault
                    reason = " ".join(str(err).split()) or type(err).__name__
                    return _Failure(f"cannot read image {path}: {reason}")
        x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
        return x, torch.from_numpy(self.labels[positions]), torch.from_numpy(np.asarray(positions, dtype=np.int64))


def _stream(dataset: ImageFiles, items: list, workers: int, device: torch.device) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Decoded batches of `items`, in order, moved to `device` (uint8 images)."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=items, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    batches = iter(loader)
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError as err:
                if not any(words in str(err) for words in ("exited unexpectedly", "killed by signal")):
                    raise
                raise RunError(f"an image loading worker failed: {str(err).splitlines()[0]}; try fewer data.workers") from None
            if isinstance(batch, _Failure):
                raise DataError(batch.message)
            x, y, index = batch
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device, non_blocking=True)
    finally:
        # Stop the workers now (an error, or the consumer stopped early), not when the garbage
        # collector frees a traceback that holds this frame: that shutdown can stall for seconds.
        del batches, loader


# ---------------------------------------------------------------------------------------------
# The dataset and its training batches


@functools.lru_cache(maxsize=8)
def _normalisation(mean: tuple, std: tuple, device: torch.device) -> tuple[Tensor, Tensor]:
    """(scale, shift) of shape (1, 3, 1, 1) on `device` with `x * scale + shift = (x / 255 - mean) / std`."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=device).view(1, 3, 1, 1)
    return scale, shift


@dataclass
class ImageFolderData:
    """An image folder's splits as file lists; images are decoded when batches are asked for.

    Offers what the trainer and the evaluation need of any data (see `locallearn.data`):
    `num_classes`, `image_shape`, `pixel_low`, `pixel_high`, `to(device)`, `split_size(split)`,
    `labels(split, limit)` and `eval_batches(split, batch_size, limit)`. `train_x` is None:
    the training images are never all in memory (methods that need them say so).
    """

    root: Path
    classes: list[str]
    paths: dict[str, np.ndarray]  # split -> fixed-width bytes paths relative to root
    targets: dict[str, np.ndarray]  # split -> int64 labels
    image_size: int
    workers: int = 4
    crop_scale: float = CROP_SCALE[0]  # the smallest area fraction of the training crop made at load time
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train_x = None  # not in memory

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def pixel_low(self) -> float:
        return (0.0 - self.mean[1]) / self.std[1]

    @property
    def pixel_high(self) -> float:
        return (1.0 - self.mean[1]) / self.std[1]

    @property
    def train_y(self) -> Tensor:
        return torch.from_numpy(self.targets["train"])

    def to(self, device: torch.device | str) -> ImageFolderData:
        """The same data, delivering batches on `device`."""
        return replace(self, device=torch.device(device))

    def split_size(self, split: str) -> int:
        return len(self.targets[split])

    def labels(self, split: str, limit: int | None = None) -> Tensor:
        """Labels of `split` (of its fixed subset of `limit` examples) on the device, in `eval_batches` order."""
        subset = fixed_subset(self.split_size(split), limit)
        y = self.targets[split] if subset is None else self.targets[split][subset]
        return torch.from_numpy(y).to(self.device)

    def normalise(self, x: Tensor) -> Tensor:
        """uint8 images (B, 3, S, S) on the device -> float32 `(x / 255 - mean) / std` per channel."""
        scale, shift = _normalisation(self.mean, self.std, x.device)
        return torch.addcmul(shift, x.float(), scale)

    def eval_batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) batches of `split` on the device, resized and centre-cropped (no randomness); at least one, maybe empty."""
        subset = fixed_subset(self.split_size(split), limit)
        positions = np.arange(self.split_size(split)) if subset is None else subset
        if len(positions) == 0:
            yield torch.zeros((0, *self.image_shape), device=self.device), torch.zeros(0, dtype=torch.int64, device=self.device)
            return
        items = [(None, positions[start : start + batch_size]) for start in range(0, len(positions), batch_size)]
        dataset = ImageFiles(self.root, self.paths[split], self.targets[split], self.image_size)
        for x, y, _ in _stream(dataset, items, self.workers, self.device):
            yield self.normalise(x), y

    def train_batches(self, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> ImageFolderBatches:
        return ImageFolderBatches(self, batch_size, seed, rank, world)


class ImageFolderBatches(BatchPlan):
    """Training batches of an `ImageFolderData`: `Batcher`'s plan (order, rank shares, resume), decoded by workers.

    Example::

        batches = data.train_batches(batch_size=128, seed=0)
        for x, y, index in batches.batches(epoch):   # x: float32 (128, 3, S, S) on data.device
            ...
    """

    def __init__(self, data: ImageFolderData, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        super().__init__(data.split_size("train"), batch_size, shuffle=True, seed=seed, rank=rank, world=world)
        self.data = data
        self.dataset = ImageFiles(data.root, data.paths["train"], data.targets["train"], data.image_size, seed, data.crop_scale)

    def batches(self, epoch: int, first: int = 0) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The batches of epoch `epoch` from batch `first` on: (normalised float32 x, y, positions) on the device."""
        items = [(epoch, index.numpy()) for index in self.rank_indices(epoch, first)]
        for x, y, index in _stream(self.dataset, items, self.data.workers, self.data.device):
            yield self.data.normalise(x), y, index


def load_imagefolder(
    data_dir: str | Path | None, val_size: int = 5000, train_subset: int | None = None, image_size: int = 224,
    workers: int = 4, normalize: bool = True, crop_scale: float = CROP_SCALE[0],
) -> ImageFolderData:
    """List `data_dir`'s files and split them (see the module docstring); nothing is decoded yet."""
    _require_pillow()
    if data_dir is None:
        raise UsageError("data.name=imagefolder needs data.dir=DIR (or --data-dir DIR), with DIR/train/<class>/ and DIR/val/<class>/")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (data.dir)")
    classes, train_files, train_labels = scan_split(root, "train")
    _, test_files, test_labels = scan_split(root, "val", classes)

    n_official = len(train_files)
    n_val = min(val_size, n_official // 2)
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n_official)
    n_rest = n_official - n_val
    n_train = n_rest if train_subset is None else train_subset
    if not 1 <= n_train <= n_rest:
        raise UsageError(f"data.train_subset={train_subset} must be in 1..{n_rest}: {root} has {n_rest} training images "
                         f"left after holding out {n_val} for validation (data.val_size)")
    picks = {"val": np.sort(order[:n_val]), "train": np.sort(order[n_val : n_val + n_train])}
    all_paths = _path_array(train_files)
    paths = {split: all_paths[p] for split, p in picks.items()}
    targets = {split: train_labels[p] for split, p in picks.items()}
    paths["test"], targets["test"] = _path_array(test_files), test_labels
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return ImageFolderData(root, classes, paths, targets, image_size, workers, crop_scale, mean=mean, std=std)
