"""The local-learning engine: blocks, their optimizers and schedules, and the training step.

The whole algorithm is `train_step`: each block runs forward on the detached output of
the block before it, computes its own objective, and updates only its own parameters.
`out.detach()` is the only place where the graph is cut. The engine knows nothing about
any particular method: a method supplies views and objectives.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from locallearn import methods
from locallearn.config import Config
from locallearn.data.batcher import Batcher
from locallearn.errors import RunError
from locallearn.methods.base import DataInfo, Method
from locallearn.nn.backbones import build_backbone
from locallearn.nn.network import Block, LocalNet, group_layers
from locallearn.views.base import Views


class Divergence(RunError):
    """A local loss became NaN or infinite."""


def train_step(net: LocalNet, optimizers: list[torch.optim.Optimizer], views: Views) -> list[dict[str, torch.Tensor]]:
    """One step of local learning over all blocks; returns each block's metrics."""
    h = views.inputs
    metrics, losses = [], []
    for block, optimizer in zip(net.blocks, optimizers):
        out = block(h)
        loss, block_metrics = block.objective(out, views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        h = out.detach()  # the only cut: no gradient crosses a block boundary
        metrics.append(block_metrics)
        losses.append(loss.detach())
    check_finite(net, losses)
    return metrics


def check_finite(net: LocalNet, losses: list[torch.Tensor]) -> None:
    """Raise `Divergence` naming the first block whose loss is NaN or infinite (one device sync per step)."""
    finite = torch.isfinite(torch.stack(losses))
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0])
        raise Divergence(f"the loss of block '{net.blocks[index].name}' (block {index + 1}) is {losses[index].item()}")


def make_optimizer(params: Iterable[nn.Parameter], cfg) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(kind: str, step: int, total_steps: int, decay_start: float = 0.5) -> float:
    """Multiplier of the base learning rate at `step`: constant, constant-then-linear-to-zero (Hinton), or cosine."""
    progress = min(step / max(total_steps, 1), 1.0)
    if kind == "linear-decay":
        return 1.0 if progress <= decay_start else (1.0 - progress) / (1.0 - decay_start)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def make_schedule(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg.schedule, step, total_steps, cfg.decay_start))


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The random stream of one epoch's views: a pure function of (seed, epoch), so resume is exact."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 1)


def block_name(granularity: str, index: int) -> str:
    return f"layer{index + 1}" if granularity == "layer" else f"block{index + 1}"


@dataclass
class EpochProgress:
    """Where an unfinished epoch stands: steps done, metric sums, time spent, the views' random state."""

    sums: list[dict]
    step: int = 0
    seconds: float = 0.0
    generator_state: torch.Tensor | None = None


class Trainer:
    """A network built from a config, its per-block optimizers and schedules, and its epoch loop.

    Example:
        >>> data = load_dataset("fashion-mnist", train_subset=5000)
        >>> trainer = Trainer(load_config("ff-supervised-small"), data)
        >>> for _ in range(3):
        ...     print(trainer.train_epoch())
    """

    def __init__(self, config: Config, data, device: torch.device | str = "cpu"):
        self.config = config
        self.data = data
        self.device = torch.device(device)
        method_cls = methods.get(config.method.name)
        info = DataInfo(data.num_classes, tuple(data.image_shape), data.pixel_low, data.pixel_high)
        self.method: Method = method_cls(method_cls.Options.model_validate(_method_keys(config)), info)
        torch.manual_seed(config.train.seed)
        layers = build_backbone(config.model, tuple(data.image_shape))
        groups = group_layers(layers, config.train.granularity)
        blocks = [
            Block(block_name(config.train.granularity, i), group, self.method.objective(i, len(groups), group[-1].out_features))
            for i, group in enumerate(groups)
        ]
        self.net = LocalNet(blocks).to(self.device)
        self.batcher = Batcher(data.train_x, data.train_y, config.data.batch_size, shuffle=True, seed=config.train.seed)
        total_steps = config.train.epochs * len(self.batcher)
        self.optimizers = [make_optimizer(block.parameters(), config.optim) for block in self.net.blocks]
        self.schedules = [make_schedule(opt, config.optim, total_steps) for opt in self.optimizers]
        self.epoch = 0  # completed epochs
        self.partial: EpochProgress | None = None  # the unfinished epoch, if training stopped inside one
        self.stop_requested = False

    def train_epoch(self, progress=None) -> dict | None:
        """Train (the rest of) one epoch; returns its mean metrics per block, learning rate and timing.

        If `stop_requested` becomes true, it stops after the current step and returns None;
        `partial` then holds where the epoch stands, so that a checkpoint can continue it exactly.
        """
        self.net.train()
        start = time.perf_counter()
        generator = epoch_generator(self.config.train.seed, self.epoch, self.device)
        part = self.partial
        if part is None:
            self.method.start_epoch(self.net, self.epoch, self.data.train_x, self.data.train_y, generator, self.config.data.eval_batch_size)
            part = EpochProgress(sums=[{} for _ in self.net.blocks])
        else:
            generator.set_state(part.generator_state)
        for x, y, index in self.batcher.batches(self.epoch, first=part.step):
            views = self.method.make_views(x, y, index, generator)
            try:
                step_metrics = train_step(self.net, self.optimizers, views)
            except Divergence as err:
                raise Divergence(f"{err} at epoch {self.epoch + 1}, step {part.step + 1}; lower optim.lr (the last checkpoint is kept)") from None
            for totals, metrics in zip(part.sums, step_metrics):
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
            for schedule in self.schedules:
                schedule.step()
            part.step += 1
            if progress is not None:
                progress(part.step, len(self.batcher), part.sums)
            if self.stop_requested and part.step < len(self.batcher):
                part.seconds += time.perf_counter() - start
                part.generator_state = generator.get_state()
                self.partial = part
                return None
        seconds = part.seconds + time.perf_counter() - start
        self.partial = None
        self.epoch += 1
        return {
            "epoch": self.epoch,
            "blocks": {b.name: {k: float(v) / part.step for k, v in s.items()} for b, s in zip(self.net.blocks, part.sums)},
            "lr": self.optimizers[0].param_groups[0]["lr"],
            "epoch_seconds": seconds,
            "samples_per_second": self.batcher.num_examples / seconds,
        }


def _method_keys(config: Config) -> dict:
    keys = config.method.model_dump()
    keys.pop("name")
    return keys
