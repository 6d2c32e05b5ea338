"""What a method is: how to build the views of a step and which objective each block gets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from locallearn.nn.network import LocalNet
from locallearn.views.base import Views


class MethodOptions(BaseModel):
    """Base of each method's own config section (`method.*` keys)."""

    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass
class DataInfo:
    """What a method may know about the data: shapes and the pixel range after normalisation."""

    num_classes: int
    image_shape: tuple[int, ...]
    pixel_low: float
    pixel_high: float


class Method:
    """Base class. Subclasses set `name`, `Options`, `primary` and implement the hooks.

    `primary` names the classifier (a key of `predict`) whose accuracy is the run's
    `test_accuracy`, unless evaluation picks the linear readout instead.
    """

    name: str = ""
    Options: type[MethodOptions] = MethodOptions
    primary: str = ""

    def __init__(self, options: MethodOptions, data: DataInfo):
        self.options = options
        self.data = data

    def objective(self, index: int, num_blocks: int, width: int) -> nn.Module:
        """The local objective of block `index` whose output has `width` features."""
        raise NotImplementedError

    def make_views(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> Views:
        """The inputs and targets of one step from a batch (`index`: the examples' positions in the train set)."""
        raise NotImplementedError

    def start_epoch(self, net: LocalNet, epoch: int, train_x: torch.Tensor, train_y: torch.Tensor, generator: torch.Generator, batch_size: int) -> None:
        """Called before each training epoch; methods with per-epoch state (hard negatives) refresh it here."""

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class scores (B, C) of every classifier the method has: the whole net and each block."""
        raise NotImplementedError

    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-block features (B, F) for linear probes, computed without grad."""
        return [out.flatten(1) for out in net.forward_blocks(x)]

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors the method keeps between epochs, saved in checkpoints so that resume is exact."""
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state` returned."""
