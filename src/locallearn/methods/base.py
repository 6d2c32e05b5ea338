"""What a method is: how to build the views of a step and which objective each block gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from locallearn.nn.network import LocalNet
from locallearn.views.base import Views


class MethodOptions(BaseModel):
    """Base of each method's own config section (`method.*` keys)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


@dataclass
class DataInfo:
    """What a method may know about the data: shapes and the pixel range after normalisation."""

    num_classes: int
    image_shape: tuple[int, ...]
    pixel_low: float
    pixel_high: float


def flat_features(out: torch.Tensor, pool: int = 2) -> torch.Tensor:
    """A block output as (B, F) probe features; spatial (B, C, H, W) outputs are average-pooled to at most `pool` x `pool` first."""
    if out.dim() == 4:
        out = F.adaptive_avg_pool2d(out, (min(pool, out.shape[2]), min(pool, out.shape[3])))
    return out.flatten(1)


class Method:
    """Base class. Subclasses set `name`, `Options`, `primary` and implement the hooks.

    `primary` names the classifier (a key of `predict`) whose accuracy is the run's
    `test_accuracy`, unless evaluation picks the linear readout instead; `"readout"`
    means the method has no classifier of its own and the readout is its accuracy.

    Extension points (all optional): `build_layers` (the method's own network),
    `train_step` (the method runs the step itself, e.g. the time steps of a recurrent net),
    `after_step` (e.g. move an EMA teacher) with its per-step tensors in `state`, and the
    capabilities `supports_pipeline` / `supports_data_parallel`, which the engine enforces.
    """

    name: str = ""
    Options: type[MethodOptions] = MethodOptions
    primary: str = ""
    supports_pipeline: bool = True  # False: the engine refuses distributed.mode=pipeline and distributed.devices
    pipeline_refusal: str = "its blocks are not a feed-forward chain whose stages could run one after another"  # why, when supports_pipeline is False
    supports_data_parallel: bool = True  # False: the engine refuses data parallel runs (several processes)
    train_step: Optional[Callable] = None
    """None: the engine's feed-forward `engine.train_step`. A method that owns the step defines
    `train_step(self, blocks, optimizers, views, precision) -> (metrics per block, output)`, with the
    same contract: every block's metrics hold its `loss`; the engine keeps the epoch loop, schedules,
    checkpoints, the divergence check (`check_finite` on those losses), progress and metrics."""

    def __init__(self, options: MethodOptions, data: DataInfo):
        self.options = options
        self.data = data

    @property
    def uses_readout(self) -> bool:
        """True when the run's accuracy is the linear readout's rather than a classifier of `predict`."""
        return self.primary == "readout"

    @property
    def goodness_kind(self) -> Optional[str]:
        """The FF goodness every block's objective scores (`sum` or `mean`); None when the method has none."""
        return None

    @property
    def negatives(self) -> Optional[str]:
        """`"hybrid"` when the method's negatives are hybrid images (reports draw examples of them), else None."""
        return None

    def build_layers(self, model_config, image_shape: tuple[int, ...]) -> Optional[list[nn.Module]]:
        """The network's layers if the method builds its own (each with `out_features`); None: `build_backbone`."""
        return None

    def objective(self, index: int, num_blocks: int, width: int) -> nn.Module:
        """The local objective of block `index` whose output has `width` features."""
        raise NotImplementedError

    def make_views(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> Views:
        """The inputs and targets of one step from a batch (`index`: the examples' positions in the train set)."""
        raise NotImplementedError

    def start_epoch(self, net: LocalNet, epoch: int, train_x: torch.Tensor, train_y: torch.Tensor, generator: torch.Generator, batch_size: int) -> None:
        """Called before each training epoch; methods with per-epoch state (hard negatives) refresh it here.

        `train_x` is None when the training images are not in memory (`data.name=imagefolder`):
        a method that needs them must raise a `UsageError` saying so.
        """

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class scores (B, C) of every classifier the method has: the whole net and each block."""
        raise NotImplementedError

    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-block features (B, F) for linear probes, computed without grad."""
        return [flat_features(out) for out in net.forward_blocks(x)]

    def readout_blocks(self, num_blocks: int) -> list[int]:
        """The blocks whose features the linear readout concatenates: all but the first (Hinton's choice)."""
        return list(range(1, num_blocks)) if num_blocks > 1 else [0]

    def after_step(self, net: LocalNet, step: int, total_steps: int) -> None:
        """Called after every training step (all blocks' optimizer steps done); `step` counts from 0 across epochs."""

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors the method keeps between steps, saved in every checkpoint (also mid-epoch) so that resume is exact."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state` returned."""
