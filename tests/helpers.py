"""Small builders shared by the tests: a tiny synthetic dataset and configs for it."""

from __future__ import annotations

from pathlib import Path

import torch

from datafiles import write_mnist_like
from locallearn.config import load_config
from locallearn.data import DataSplits, load_dataset


def tiny_dataset_folder(root: Path, n_train: int = 600, n_test: int = 200) -> Path:
    folder = root / "tiny-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    write_mnist_like(folder, n_train, n_test, gz=True, seed=0)
    return folder


def tiny_splits(root: Path, val_size: int = 100) -> DataSplits:
    return load_dataset("mnist", tiny_dataset_folder(root), val_size=val_size, download=False)


def tiny_config(preset: str, folder: Path, *overrides: str):
    """A preset shrunk to seconds on the synthetic data: small widths, few epochs, no progress bar."""
    return load_config(
        preset,
        [
            "data.name=mnist",
            f"data.dir={folder}",
            "data.val_size=100",
            "data.download=false",
            "data.batch_size=50",
            "data.eval_batch_size=200",
            "model.hidden=[64,64,64]",
            "train.epochs=2",
            "eval.probe_epochs=2",
            "logging.progress=false",
            *overrides,
        ],
    )


def random_images(n: int = 8, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
