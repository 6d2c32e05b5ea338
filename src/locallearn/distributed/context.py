"""Who this process is in a torchrun job, and joining the process group."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from locallearn.errors import RunError, UsageError


@dataclass(frozen=True)
class DistContext:
    """This process's place: rank of world, and the mode (`data` or `pipeline`). One process: rank 0 of 1."""

    rank: int = 0
    world: int = 1
    mode: str = "data"

    @property
    def is_main(self) -> bool:
        """The rank that writes the run folder and evaluates."""
        return self.rank == 0

    @property
    def data_parallel(self) -> bool:
        return self.world > 1 and self.mode == "data"

    @property
    def pipeline(self) -> bool:
        return self.world > 1 and self.mode == "pipeline"

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if `flag` is true on any (one small all-reduce; data parallel only)."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: the process's CUDA device if there is one, else the CPU; `cuda` under torchrun: cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RunError(f"train.device={name} but no CUDA device is available; use train.device=cpu or auto")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(cfg, device_name: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext(mode=cfg.mode), pick_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise UsageError("distributed.backend=nccl needs CUDA devices; use distributed.backend=gloo on the CPU")
    if cfg.devices:
        raise UsageError("distributed.devices is for a pipeline inside one process; under torchrun each rank uses its own device")
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=cfg.timeout_s),
                                device_id=device if device.type == "cuda" else None)
    except (RuntimeError, ValueError) as err:
        raise RunError(f"rank {rank} could not join the process group ({backend}): {str(err).splitlines()[0]}") from None
    return DistContext(rank, world, cfg.mode), device


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
