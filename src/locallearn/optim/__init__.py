"""The optimizer room: each block's optimizer and learning-rate schedule, built from `optim.*`.

`OPTIMIZERS` and `SCHEDULES` list every name once; config.py's `optim.name` and
`optim.schedule` are `Literal`s over their keys.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from locallearn.errors import UsageError
from locallearn.optim.lars import LARS

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, cfg, lr: torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay),
    "sgd": lambda params, cfg, lr: torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay),
    "lars": lambda params, cfg, lr: LARS(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust_coefficient=cfg.trust_coefficient),
}

SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "constant": lambda progress, decay_start: 1.0,
    "linear-decay": lambda progress, decay_start: 1.0 if progress <= decay_start else (1.0 - progress) / (1.0 - decay_start),
    "cosine": lambda progress, decay_start: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


def make_optimizer(params: Iterable[nn.Parameter], cfg, lr: float) -> torch.optim.Optimizer:
    """The optimizer of `cfg` (an `OptimConfig`) at base learning rate `lr` (a block's: `block_learning_rates`)."""
    return OPTIMIZERS[cfg.name](params, cfg, lr)


def block_learning_rates(cfg, num_blocks: int) -> list[float]:
    """Each block's base learning rate: `cfg.lr` times its factor in `cfg.block_lr_scale`, whose last factor
    also holds for every later block (`[1, 0.3]`: the first block at `lr`, all others at 0.3 `lr`)."""
    scale = cfg.block_lr_scale or [1.0]
    if len(scale) > num_blocks:
        raise UsageError(f"optim.block_lr_scale has {len(scale)} factors but the network has only {num_blocks} blocks; give at most one per block")
    return [cfg.lr * factor for factor in scale + scale[-1:] * (num_blocks - len(scale))]


def lr_factor(kind: str, step: int, total_steps: int, decay_start: float = 0.5, warmup: float = 0.0) -> float:
    """Multiplier of the base learning rate at `step`: schedule `kind` of `SCHEDULES` (constant,
    constant-then-linear-to-zero as Hinton's, or cosine), after a linear warm-up over the first `warmup` fraction of the steps."""
    progress = min(step / max(total_steps, 1), 1.0)
    if progress < warmup:
        return (step + 1) / (warmup * total_steps + 1)
    return SCHEDULES[kind](progress, decay_start)


def make_schedule(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """`optimizer`'s schedule of `cfg` (an `OptimConfig`) over `total_steps` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg.schedule, step, total_steps, cfg.decay_start, cfg.warmup))
