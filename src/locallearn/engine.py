"""The local-learning engine: blocks, their optimizers and schedules, and the training step.

The whole algorithm is `train_step`: each block runs forward on the detached output of
the block before it, computes its own objective, and updates only its own parameters.
`out.detach()` is the only place where the graph is cut. The engine knows nothing about
any particular method: a method supplies views and objectives, and may use the extension
points of `Method` (its own layers, its own step for a recurrent net, a hook after each step).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from locallearn import methods
from locallearn.config import Config
from locallearn.data import train_batches
from locallearn.distributed.context import DistContext
from locallearn.distributed.links import LocalLink, OnDevice, PipelineLink, gather_to_main, stage_bounds
from locallearn.errors import RunError, UsageError
from locallearn.methods.base import DataInfo, Method
from locallearn.nn.backbones import build_backbone
from locallearn.nn.blackbox import with_blackboxes
from locallearn.nn.network import Block, LocalNet, group_layers
from locallearn.nn.noise import set_noise_rank
from locallearn.optim import block_learning_rates, make_optimizer, make_schedule
from locallearn.views.base import Views


class Divergence(RunError):
    """A local loss became NaN or infinite."""


def train_step(blocks, optimizers: list[torch.optim.Optimizer], views: Views, precision: str = "fp32") -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """One step of local learning over `blocks`; returns each block's metrics (with its `loss`) and the last block's detached output.

    A block called with the views returns its output, its local loss and metrics; the
    blocks may be wrapped (DistributedDataParallel, a device placement) as long as they
    keep that call. `precision="bf16"` runs forward and loss under bfloat16 autocast.
    """
    h = views.inputs
    metrics = []
    for block, optimizer in zip(blocks, optimizers):
        with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out, loss, block_metrics = block(h, views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        h = out.detach()  # the only cut: no gradient crosses a block boundary
        metrics.append(block_metrics)
    return metrics, h


def overlap_step(blocks, optimizers: list[torch.optim.Optimizer], views: Views, precision: str = "fp32") -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """`train_step` with LoCo's overlapping blocks (`train.overlap`): block k's loss trains block k and block k−1.

    Exactly one boundary is crossed. Block k reads the detached output of block k−1 as a leaf;
    the gradient of its loss at that leaf is carried back through block k−1 alone (whose own
    input is detached), in the same backward as block k−1's own loss, and only then does block
    k−1 step. The price: a second backward through each block to its input, and two blocks'
    activations held at a time.
    """
    h, metrics, waiting = views.inputs, [], None  # waiting: the previous block's (loss, output, optimizer)
    for block, optimizer in zip(blocks, optimizers):
        x = h.requires_grad_() if waiting else h
        with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out, loss, block_metrics = block(x, views)
        if waiting:
            (carried,) = torch.autograd.grad(loss, x, retain_graph=True)
            _backward_and_step(*waiting, carried)
        waiting = (loss, out, optimizer)
        h = out.detach()
        metrics.append(block_metrics)
    _backward_and_step(*waiting, None)
    return metrics, h


def _backward_and_step(loss: torch.Tensor, out: torch.Tensor, optimizer: torch.optim.Optimizer, carried: torch.Tensor | None) -> None:
    """One block's update from its own loss plus, if given, the next block's gradient at its output (the one crossing)."""
    optimizer.zero_grad(set_to_none=True)
    if carried is None:
        loss.backward()
    else:
        torch.autograd.backward([loss, out], [torch.ones_like(loss), carried])
    optimizer.step()


def check_finite(blocks, losses: list[torch.Tensor]) -> None:
    """Raise `Divergence` naming the first block whose loss is NaN or infinite (one device sync per step)."""
    finite = torch.isfinite(torch.stack([loss.float().to(losses[0].device) for loss in losses]))
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0])
        name = getattr(blocks[index], "name", None) or blocks[index].module.name
        raise Divergence(f"the loss of block '{name}' is {losses[index].item()}")


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The random stream of an epoch's start (e.g. hard negatives): a pure function of (seed, epoch), the same on every rank."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 1)


def step_generator(seed: int, epoch: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The random stream of one step's views: a pure function of (seed, epoch, step, rank), so a resume at any step is exact."""
    key = np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(key) >> 1)


def block_name(granularity: str, index: int) -> str:
    return f"layer{index + 1}" if granularity == "layer" else f"block{index + 1}"


@dataclass
class EpochProgress:
    """Where an unfinished epoch stands: steps done, metric sums per block, time spent."""

    sums: list[dict]
    step: int = 0
    seconds: float = 0.0


class Trainer:
    """A network built from a config, its per-block optimizers and schedules, and its epoch loop.

    `dist` places the process in a torchrun job (see `locallearn.distributed`): in data
    parallel mode every rank trains every block on its shard of each batch, with each
    block's gradients averaged (DistributedDataParallel per block); in pipeline mode this
    rank trains only its stage of blocks. `distributed.devices` spreads the blocks of one
    process over several devices instead.

    Example:
        >>> data = load_dataset("fashion-mnist", train_subset=5000)
        >>> trainer = Trainer(load_config("ff-supervised-small"), data)
        >>> for _ in range(3):
        ...     print(trainer.train_epoch())
    """

    def __init__(self, config: Config, data, device: torch.device | str = "cpu", dist: DistContext | None = None):
        self.config = config
        self.data = data
        self.device = torch.device(device)
        self.dist = dist or DistContext(mode=config.distributed.mode)
        method_cls = methods.get(config.method.name)
        info = DataInfo(data.num_classes, tuple(data.image_shape), data.pixel_low, data.pixel_high)
        self.method: Method = method_cls(config.method.options, info)
        refuse_unsupported_modes(self.method, self.dist, config.distributed, config.train.overlap)
        torch.manual_seed(config.train.seed)
        layers = self.method.build_layers(config.model, tuple(data.image_shape)) or build_backbone(config.model, tuple(data.image_shape))
        layers = with_blackboxes(layers, config.model, config.train.granularity, config.train.seed)
        groups = group_layers(layers, config.train.granularity)
        blocks = [
            Block(block_name(config.train.granularity, i), group, self.method.objective(i, len(groups), group[-1].out_features))
            for i, group in enumerate(groups)
        ]
        self.net = LocalNet(blocks).to(self.device)
        if config.train.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if config.train.compile:
            for block in self.net.blocks:
                block.layers.compile()
        shard = self.dist.data_parallel
        self.batcher = train_batches(data, config.data.batch_size, config.train.seed, self.dist.rank if shard else 0, self.dist.world if shard else 1)
        self.total_steps = config.train.epochs * len(self.batcher)
        rates = block_learning_rates(config.optim, len(blocks))
        self.optimizers = [make_optimizer(block.trainable_parameters(), config.optim, lr) for block, lr in zip(self.net.blocks, rates)]
        self.schedules = [make_schedule(opt, config.optim, self.total_steps) for opt in self.optimizers]
        self.own, self.steps, self.link = self._place_blocks()
        self.epoch = 0  # completed epochs
        self.partial: EpochProgress | None = None  # the unfinished epoch, if training stopped inside one
        self.stop_requested = False

    def _place_blocks(self) -> tuple[range, list, LocalLink]:
        """The blocks this process trains, the callables that train them, and the link that feeds them."""
        blocks, d = self.net.blocks, self.config.distributed
        if self.dist.pipeline:
            own = range(*stage_bounds(len(blocks), self.dist.world)[self.dist.rank])
            return own, [blocks[i] for i in own], PipelineLink(self, d.queue_depth)
        own = range(len(blocks))
        if self.dist.data_parallel:
            set_noise_rank(self.net, self.dist.rank)
            ids = [self.device] if self.device.type == "cuda" else None
            return own, [DistributedDataParallel(b, device_ids=ids) for b in blocks], LocalLink(self)
        if d.devices:
            devices = [torch.device(name) for name in d.devices]
            stage_of = [k for k, (lo, hi) in enumerate(stage_bounds(len(blocks), len(devices))) for _ in range(lo, hi)]
            for block, k in zip(blocks, stage_of):
                block.to(devices[k])
            return own, [OnDevice(b, devices[k]) for b, k in zip(blocks, stage_of)], LocalLink(self)
        return own, list(blocks), LocalLink(self)

    def step_generator(self, step: int) -> torch.Generator:
        return step_generator(self.config.train.seed, self.epoch, step, self.dist.rank, self.device)

    def train_epoch(self, progress=None) -> dict | None:
        """Train (the rest of) one epoch; returns its mean metrics per block, learning rate and timing.

        If `stop_requested` becomes true, it stops after the current step and returns None;
        `partial` then holds where the epoch stands, so that a checkpoint can continue it exactly.
        In pipeline mode the record and the whole network's state end up on rank 0.
        """
        start = time.perf_counter()
        part = self.partial
        if part is None:
            if self.dist.rank == 0 or self.dist.data_parallel:
                generator = epoch_generator(self.config.train.seed, self.epoch, self.device)
                self.net.eval()  # a method's look at the net before the epoch (hard negatives) sees no dropout, no batch statistics
                self.method.start_epoch(self.net, self.epoch, self.data.train_x, self.data.train_y, generator, self.config.data.eval_batch_size)
            part = EpochProgress(sums=[{} for _ in self.net.blocks])
        self.net.train()
        optimizers = [self.optimizers[i] for i in self.own]
        step_fn = self.method.train_step or (overlap_step if self.config.train.overlap else train_step)
        stopped = False
        for views in self.link.views(part.step):
            if self.config.train.channels_last and views.inputs.dim() == 4:
                views.inputs = views.inputs.contiguous(memory_format=torch.channels_last)
            step_metrics, output = step_fn(self.steps, optimizers, views, self.config.train.precision)
            try:
                check_finite(self.steps, [metrics["loss"] for metrics in step_metrics])
            except Divergence as err:
                raise Divergence(f"{err} at epoch {self.epoch + 1}, step {part.step + 1}; lower optim.lr (the last checkpoint is kept)") from None
            self.method.after_step(self.net, self.epoch * len(self.batcher) + part.step, self.total_steps)
            for i, metrics in zip(self.own, step_metrics):
                totals = part.sums[i]
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
            for i in self.own:
                self.schedules[i].step()
            part.step += 1
            if progress is not None:
                progress(part.step, len(self.batcher), part.sums)
            stopped = self.link.after_step(output, views, self.stop_requested) and part.step < len(self.batcher)
            if stopped:
                break
        self.link.flush()
        if self.dist.pipeline:
            gather_to_main(self, self.own, part.sums)
        part.seconds += time.perf_counter() - start
        if stopped:
            self.partial = part
            return None
        self.partial = None
        self.epoch += 1
        return {
            "epoch": self.epoch,
            "blocks": {b.name: {k: float(v) / part.step for k, v in s.items()} for b, s in zip(self.net.blocks, part.sums)},
            "lr": self.optimizers[0].param_groups[0]["lr"],
            "epoch_seconds": part.seconds,
            "samples_per_second": self.batcher.num_examples / part.seconds,
        }


def refuse_unsupported_modes(method: Method, dist: DistContext, cfg, overlap: bool = False) -> None:
    """A one-line `UsageError` when the run asks for a mode the method declares it cannot train in."""
    if overlap and method.train_step is not None:
        raise UsageError(f"train.overlap does not apply to method {method.name!r}: it trains with its own step, not the engine's chain of blocks; use train.overlap=false")
    if overlap and dist.pipeline:
        raise UsageError("train.overlap cannot run as a pipeline (distributed.mode=pipeline): a block's loss must reach the block before it, "
                         "which another process trains; use distributed.mode=data or one process")
    if not method.supports_pipeline and (dist.pipeline or cfg.devices):
        raise UsageError(f"method {method.name!r} cannot run as a pipeline (distributed.mode=pipeline or distributed.devices): "
                         f"{method.pipeline_refusal}; run it in one process or with distributed.mode=data")
    if not method.supports_data_parallel and dist.data_parallel:
        raise UsageError(f"method {method.name!r} cannot train data parallel (distributed.mode=data over {dist.world} processes): it declares "
                         "supports_data_parallel=False; run it in one process")
