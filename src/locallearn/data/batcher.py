"""Whole batches from tensors already in memory, with an epoch order that a resume can replay."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


class Batcher:
    """Serve `(x, y, index)` batches from in-memory tensors, one `index_select` per batch, no per-sample Python.

    With `shuffle=True`, epoch k's order is a pure function of `(seed, k)`: a generator
    is seeded afresh for each epoch, so a run resumed at epoch k sees exactly the
    batches it would have seen without stopping.

    With `world` > 1 (data-parallel training), `batch_size` is per rank: the epoch is cut
    into global batches of `world * batch_size` in the same order on every rank, and rank
    `rank` serves its slice of each (`tensor_split`, so a short last batch is shared out
    evenly; a last batch with fewer examples than ranks is dropped on every rank).

    Example::

        batcher = Batcher(train_x, train_y, batch_size=128, seed=0)
        for epoch in range(start_epoch, epochs):
            for x, y, index in batcher.batches(epoch):
                ...
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool = True, drop_last: bool = False, seed: int = 0,
        rank: int = 0, world: int = 1,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        if x.device != y.device:
            raise ValueError(f"x is on {x.device} but y is on {y.device}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
        self.x, self.y = x, y
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world = rank, world
        self.batch_size = batch_size * world  # the global batch

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.x), self.batch_size)
        return full + (1 if rest >= self.world and not self.drop_last else 0)

    @property
    def num_examples(self) -> int:
        """Examples served per epoch (over all ranks)."""
        return min(len(self) * self.batch_size, len(self.x))

    def batches(self, epoch: int, first: int = 0) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The batches of epoch `epoch` (0-based), in that epoch's order, with the examples' positions.

        `first` skips the epoch's first batches: a run resumed mid-epoch continues where it stopped.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        order = self.epoch_order(epoch) if self.shuffle else None
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, len(self.x))
            if order is None and self.world == 1:
                yield self.x[start:stop], self.y[start:stop], torch.arange(start, stop, device=self.x.device)
                continue
            index = order[start:stop] if order is not None else torch.arange(start, stop, device=self.x.device)
            if self.world > 1:
                index = index.tensor_split(self.world)[self.rank]
            yield self.x.index_select(0, index), self.y.index_select(0, index), index

    def epoch_order(self, epoch: int) -> Tensor:
        """The permutation of epoch `epoch`, drawn on the CPU (same on every device) and moved to the data's device."""
        generator = torch.Generator()
        generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0]))
        return torch.randperm(len(self.x), generator=generator).to(self.x.device)
