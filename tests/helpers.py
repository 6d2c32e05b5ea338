"""Small builders shared by the tests: a tiny synthetic dataset and configs for it."""

from __future__ import annotations

from pathlib import Path

import torch

from datafiles import write_mnist_like
from locallearn.config import load_config
from locallearn.data import DataSplits, load_dataset


TINY = ["data.name=mnist", "data.val_size=100", "data.batch_size=50", "data.eval_batch_size=200",
        "model.hidden=[32,32]", "eval.probe_epochs=1", "data.download=false"]  # ff-supervised-small shrunk for the tiny dataset


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


def prototype_splits(n_train: int = 1000, n_test: int = 500, size: int = 16, noise: float = 2.0, seed: int = 0, classes: int = 10) -> DataSplits:
    """Images = a smooth random prototype per class + strong pixel noise, as in-memory splits (100 for validation).

    A narrow random network loses the class in the noise; units that learn to detect
    whole prototypes (as unsupervised FF does, to tell real images from hybrids) keep it.
    """
    from locallearn.views.hybrid import blur

    generator = torch.Generator().manual_seed(seed)
    prototypes = blur(torch.randn(classes, size, size, generator=generator), 3)
    prototypes /= prototypes.square().mean(dim=(1, 2), keepdim=True).sqrt()

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=generator)
        return (prototypes[y] + noise * torch.randn(n, size, size, generator=generator)).unsqueeze(1), y

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = split(n_train), split(100), split(n_test)
    return DataSplits(train_x, train_y, val_x, val_y, test_x, test_y, classes, (1, size, size), 0.0, 1.0, -1.0, 1.0)


def grating_splits(n_train: int = 1000, n_test: int = 500, size: int = 16, noise: float = 1.0, seed: int = 0, classes: int = 10) -> DataSplits:
    """Images = a grating whose orientation is the class (random phase) + pixel noise, as in-memory splits (100 for validation).

    The class is a local texture, visible to small convolution kernels anywhere in the image.
    """
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float), torch.arange(size, dtype=torch.float), indexing="ij")

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=generator)
        angle = (y.float() * torch.pi / classes).view(n, 1, 1)
        phase = 2 * torch.pi * torch.rand(n, 1, 1, generator=generator)
        waves = torch.cos(1.6 * (rows * torch.cos(angle) + cols * torch.sin(angle)) + phase)
        return (waves + noise * torch.randn(n, size, size, generator=generator)).unsqueeze(1), y

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = split(n_train), split(100), split(n_test)
    return DataSplits(train_x, train_y, val_x, val_y, test_x, test_y, classes, (1, size, size), 0.0, 1.0, -1.0, 1.0)


def gradient_leaks(trainer, views, step=None) -> list[tuple[int, int]]:
    """(owner block, loss block) of every parameter outside a block that the block's loss has a gradient path to, in one training step.

    Each objective's loss is differentiated, as soon as it is computed, with respect to every
    trainable parameter of the other blocks, so the check does not depend on when a step
    calls backward (a recurrent step may sum its losses) nor on how often a block's objective
    runs. `step` is the training step to check: by default the method's own, else the engine's.
    """
    from locallearn.engine import train_step

    blocks = trainer.net.blocks
    trainable = [[p for p in block.parameters() if p.requires_grad] for block in blocks]
    leaks: set[tuple[int, int]] = set()
    calls = [0] * len(blocks)

    def checked(index: int, objective):
        original = objective.forward

        def forward(out, step_views, **inputs):
            loss, metrics = original(out, step_views, **inputs)
            others = [(owner, p) for owner, params in enumerate(trainable) if owner != index for p in params]
            if others:
                grads = torch.autograd.grad(loss, [p for _, p in others], allow_unused=True, retain_graph=True)
                leaks.update((owner, index) for (owner, _), grad in zip(others, grads) if grad is not None)
            calls[index] += 1
            return loss, metrics

        return forward

    for index, block in enumerate(blocks):
        block.objective.forward = checked(index, block.objective)
    try:
        (step or trainer.method.train_step or train_step)(blocks, trainer.optimizers, views, "fp32")
    finally:
        for block in blocks:
            del block.objective.forward
    assert all(calls), f"a step must compute every block's objective; calls per block: {calls}"
    return sorted(leaks)


def stop_and_resume(first, config, data, folder: Path, steps: int):
    """Stop `first` after `steps` steps of its next epoch, checkpoint it into `folder`, and return a new trainer resumed from there.

    The exact-resume tests compare what this trainer goes on to do with an uninterrupted one."""
    from locallearn.checkpoint import load_checkpoint, save_checkpoint
    from locallearn.engine import Trainer

    def stop(step, total, sums):
        first.stop_requested = step >= steps

    assert first.train_epoch(progress=stop) is None and first.partial.step == steps
    save_checkpoint(folder, first, {})
    resumed = Trainer(config, data)
    load_checkpoint(folder, resumed)
    assert resumed.partial.step == steps
    return resumed


def assert_resume_is_exact(config, data, folder: Path, steps: int = 2) -> None:
    """Two epochs uninterrupted give the very weights of one epoch, a stop after `steps` steps of the second, a resume and its rest."""
    from locallearn.engine import Trainer

    reference = Trainer(config, data)
    for _ in range(2):
        reference.train_epoch()
    first = Trainer(config, data)
    first.train_epoch()
    resumed = stop_and_resume(first, config, data, folder, steps=steps)
    resumed.train_epoch()
    for (name, mine), theirs in zip(resumed.net.state_dict().items(), reference.net.state_dict().values()):
        assert torch.equal(mine, theirs), name


def without_times(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("epoch_seconds", "samples_per_second")}
