"""Whole batches from tensors already in memory, with an epoch order that a resume can replay."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


class BatchPlan:
    """Which examples each step of an epoch takes: an order, global batches, this rank's share of each.

    With `shuffle=True`, epoch k's order is a pure function of `(seed, k)`: a generator
    is seeded afresh for each epoch, so a run resumed at epoch k sees exactly the
    batches it would have seen without stopping.

    With `world` > 1 (data-parallel training), `batch_size` is per rank: the epoch is cut
    into global batches of `world * batch_size` in the same order on every rank, and rank
    `rank` takes its slice of each (`tensor_split`, so a short last batch is shared out
    evenly; a last batch with fewer examples than ranks is dropped on every rank).
    Both batch sources (in-memory `Batcher`, streamed image folders) follow this plan.
    """

    def __init__(self, count: int, batch_size: int, shuffle: bool = True, drop_last: bool = False, seed: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
        self.count, self.shuffle, self.drop_last, self.seed = count, shuffle, drop_last, seed
        self.rank, self.world = rank, world
        self.batch_size = batch_size * world  # the global batch

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.count, self.batch_size)
        return full + (1 if rest >= self.world and not self.drop_last else 0)

    @property
    def num_examples(self) -> int:
        """Examples served per epoch (over all ranks)."""
        return min(len(self) * self.batch_size, self.count)

    def epoch_order(self, epoch: int) -> Tensor:
        """The permutation of epoch `epoch`, drawn on the CPU (the same on every device and rank)."""
        if not self.shuffle:
            return torch.arange(self.count)
        generator = torch.Generator()
        generator.manual_seed(int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0]))
        return torch.randperm(self.count, generator=generator)

    def rank_indices(self, epoch: int, first: int = 0, device: torch.device | str = "cpu") -> Iterator[Tensor]:
        """This rank's example positions for each step of epoch `epoch` from step `first` on (the order moved to `device` once)."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        order = self.epoch_order(epoch).to(device)
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield index.tensor_split(self.world)[self.rank] if self.world > 1 else index


class Batcher(BatchPlan):
    """Serve `(x, y, index)` batches from in-memory tensors, one `index_select` per batch, no per-sample Python.

    The order, sharding and resume semantics are `BatchPlan`'s.

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
        super().__init__(len(x), batch_size, shuffle, drop_last, seed, rank, world)
        self.x, self.y = x, y

    def batches(self, epoch: int, first: int = 0) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The batches of epoch `epoch` (0-based), in that epoch's order, with the examples' positions.

        `first` skips the epoch's first batches: a run resumed mid-epoch continues where it stopped.
        """
        for index in self.rank_indices(epoch, first, self.x.device):
            yield self.x.index_select(0, index), self.y.index_select(0, index), index
