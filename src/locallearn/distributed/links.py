"""Where a trainer's step inputs come from and where its outputs go, in each mode.

- `LocalLink`: one process, or a data-parallel rank: views are made from (this rank's
  shard of) each batch; after a step the ranks agree whether to stop.
- `PipelineLink`: a pipeline stage. The first stage makes the views; every stage but the
  last sends its detached output, the views' targets and the stop flag to the next rank
  with non-blocking sends, at most `queue_depth` batches in flight. Nothing travels
  backwards: no gradient, no acknowledgement.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import replace

import torch
import torch.distributed as dist

from locallearn.views.base import Views

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
HEADER = 16  # stop, num_positive, labels length (-1: none), dtype code, ndim, up to 11 dims


def stage_bounds(num_blocks: int, stages: int) -> list[tuple[int, int]]:
    """Consecutive, near-equal ranges of blocks, one per stage."""
    if stages > num_blocks:
        raise ValueError(f"{stages} pipeline stages need at least {stages} blocks, the network has {num_blocks}")
    cuts = [round(i * num_blocks / stages) for i in range(stages + 1)]
    return list(zip(cuts, cuts[1:]))


class LocalLink:
    """One process or a data-parallel rank: views from the batcher, stop agreed by all ranks."""

    def __init__(self, trainer):
        self.trainer = trainer

    def views(self, first: int) -> Iterator[Views]:
        t = self.trainer
        for step, (x, y, index) in enumerate(t.batcher.batches(t.epoch, first), first):
            yield t.method.make_views(x, y, index, t.step_generator(step))

    def after_step(self, output: torch.Tensor, views: Views, stop: bool) -> bool:
        return self.trainer.dist.any(stop, self.trainer.device)

    def flush(self) -> None:
        pass


class PipelineLink(LocalLink):
    """A pipeline stage on rank `rank`: receives from rank - 1 (unless first), sends to rank + 1 (unless last)."""

    def __init__(self, trainer, queue_depth: int):
        super().__init__(trainer)
        self.rank, self.world = trainer.dist.rank, trainer.dist.world
        self.queue_depth = queue_depth
        self.pending: deque = deque()
        self.received_stop = False

    def views(self, first: int) -> Iterator[Views]:
        if self.rank == 0:
            yield from super().views(first)
            return
        for _ in range(first, len(self.trainer.batcher)):
            output, views, self.received_stop = self._receive()
            yield views
            if self.received_stop:
                return

    def after_step(self, output: torch.Tensor, views: Views, stop: bool) -> bool:
        stop = stop if self.rank == 0 else self.received_stop
        if self.rank < self.world - 1:
            self._send(output, views, stop)
        return stop

    def flush(self) -> None:
        while self.pending:
            for work in self.pending.popleft()[0]:
                work.wait()

    def _send(self, output: torch.Tensor, views: Views, stop: bool) -> None:
        output = output.contiguous()
        labels = views.labels
        header = [int(stop), views.num_positive, -1 if labels is None else labels.numel(), DTYPES.index(output.dtype), output.dim(), *output.shape]
        header_tensor = torch.tensor(header + [0] * (HEADER - len(header)), dtype=torch.int64, device=output.device)
        tensors = [header_tensor, output] + ([labels.contiguous()] if labels is not None else [])
        works = [dist.isend(tensor, self.rank + 1, tag=tag) for tag, tensor in enumerate(tensors)]
        self.pending.append((works, tensors))
        while len(self.pending) > self.queue_depth:
            for work in self.pending.popleft()[0]:
                work.wait()

    def _receive(self) -> tuple[torch.Tensor, Views, bool]:
        device = self.trainer.device
        header = torch.empty(HEADER, dtype=torch.int64, device=device)
        dist.recv(header, self.rank - 1, tag=0)
        stop, num_positive, num_labels, dtype, ndim, *dims = header.tolist()
        output = torch.empty(dims[:ndim], dtype=DTYPES[dtype], device=device)
        dist.recv(output, self.rank - 1, tag=1)
        labels = None
        if num_labels >= 0:
            labels = torch.empty(num_labels, dtype=torch.int64, device=device)
            dist.recv(labels, self.rank - 1, tag=2)
        return output, Views(inputs=output, num_positive=num_positive, labels=labels), bool(stop)


class OnDevice:
    """A block placed on its own device in a one-process pipeline: moves the input and the targets there."""

    def __init__(self, block, device: torch.device):
        self.block, self.device, self.name = block, device, block.name

    def __call__(self, h: torch.Tensor, views: Views):
        labels = None if views.labels is None else views.labels.to(self.device, non_blocking=True)
        return self.block(h.to(self.device, non_blocking=True), replace(views, labels=labels))


def gather_to_main(trainer, own: range, sums: list[dict]) -> None:
    """Pipeline: rank 0 receives every stage's blocks, optimizer and schedule states and metric sums (at epoch ends and stops)."""
    payload = {
        i: (
            {k: v.cpu() for k, v in trainer.net.blocks[i].state_dict().items()},
            trainer.optimizers[i].state_dict(),
            trainer.schedules[i].state_dict(),
            {k: float(v) for k, v in sums[i].items()},
        )
        for i in own
    }
    gathered = [None] * trainer.dist.world if trainer.dist.is_main else None
    dist.gather_object(payload, gathered, dst=0)
    if not trainer.dist.is_main:
        return
    for stage in gathered[1:]:
        for i, (state, optimizer_state, schedule_state, block_sums) in stage.items():
            trainer.net.blocks[i].load_state_dict(state)
            trainer.optimizers[i].load_state_dict(optimizer_state)
            trainer.schedules[i].load_state_dict(schedule_state)
            sums[i] = {k: torch.tensor(v) for k, v in block_sums.items()}
