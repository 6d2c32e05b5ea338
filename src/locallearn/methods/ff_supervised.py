"""Supervised Forward-Forward (Hinton, 2022): the label is written into the image.

Positives carry the true label, negatives a wrong one (uniform, or "hard": drawn from
the model's own belief over the wrong labels, refreshed every few epochs as in
Hinton's code). Each block learns to give positives high goodness and negatives low.
An image is classified by trying every label in one batched pass and picking the
label with the highest goodness, summed over the blocks (by default the first skipped, as
Hinton; `ScoreOptions`).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field

from locallearn.errors import UsageError
from locallearn.methods.base import Method
from locallearn.methods.ff_common import FFOptions, ScoreOptions, block_and_summed_scores, ff_objective, probe_features
from locallearn.nn.network import LocalNet
from locallearn.objectives.goodness import FFGoodnessLoss
from locallearn.views.augment import AugmentOptions, augment
from locallearn.views.base import Views
from locallearn.views.labels import hard_wrong_labels, overlay_every_label, overlay_labels, overlay_neutral, uniform_wrong_labels


class FFSupervisedOptions(FFOptions, ScoreOptions):
    """`augment`: if set, each training image is one random view (`views.augment`) before its label is written in.

    `negatives_per_positive`: how many distinct wrong labels each positive is shown with;
    together the negatives weigh as much in the loss as the positives.

    `label_strength`: the label's lit pixel in units of the black-to-white range (1: a white
    pixel, as the paper); larger values weigh the label more against the image in layer 1.

    `hard_belief`: the goodness whose softmax hard negatives are drawn from: `classifier` (the
    blocks the model classifies by, as Hinton's code) or `first` (the first block alone: about
    an eighth of the refresh's arithmetic in the 4x2000 preset, for a belief close to the sum's
    when the first block carries most of the classification).
    """

    negatives: Literal["uniform", "hard"] = "uniform"
    negatives_per_positive: int = Field(1, gt=0)
    hard_refresh_epochs: int = Field(1, gt=0)
    hard_belief: Literal["classifier", "first"] = "classifier"
    skip_first: bool = True
    classifier: Literal["goodness", "readout"] = "goodness"
    augment: Optional[AugmentOptions] = None
    label_strength: float = Field(1.0, gt=0)


class FFSupervised(Method):
    name = "ff-supervised"
    Options = FFSupervisedOptions
    primary = "goodness"

    def __init__(self, options: FFSupervisedOptions, data):
        super().__init__(options, data)
        if options.negatives_per_positive >= data.num_classes:
            raise UsageError(f"method.negatives_per_positive={options.negatives_per_positive} asks for more wrong labels than there are: "
                             f"the data has {data.num_classes} classes, so at most {data.num_classes - 1}")
        self.hard_labels: torch.Tensor | None = None

    @property
    def uses_readout(self) -> bool:
        return self.options.classifier == "readout"

    @property
    def goodness_kind(self) -> str:
        return self.options.goodness

    def objective(self, index: int, num_blocks: int, width: int) -> FFGoodnessLoss:
        return ff_objective(self.options, width)

    def _label_range(self) -> tuple[float, float]:
        """The (unlit, lit) values of the label pixels."""
        low = self.data.pixel_low
        return low, low + self.options.label_strength * (self.data.pixel_high - low)

    def _overlay(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return overlay_labels(x, labels, self.data.num_classes, *self._label_range())

    def make_views(self, x, y, index, generator) -> Views:
        count = self.options.negatives_per_positive
        if self.options.negatives == "hard" and self.hard_labels is not None:
            wrong = self.hard_labels[index]
        else:
            wrong = uniform_wrong_labels(y, self.data.num_classes, generator, count)
        if self.options.augment is not None:
            x = augment(x, self.options.augment, self.data.pixel_low, self.data.pixel_high, generator)
        inputs = self._overlay(torch.cat([x] * (count + 1)), torch.cat([y, wrong.t().flatten()]))
        return Views(inputs=inputs, num_positive=x.shape[0], labels=y)

    def start_epoch(self, net, epoch, train_x, train_y, generator, batch_size) -> None:
        if self.options.negatives != "hard" or epoch % self.options.hard_refresh_epochs:
            return
        if train_x is None:
            raise UsageError("method.negatives=hard scores the whole training set in memory, which this dataset (data.name=imagefolder) "
                             "does not hold; use method.negatives=uniform")
        chunks = []
        for start in range(0, train_x.shape[0], batch_size):
            scores = self._belief(net, train_x[start : start + batch_size])
            chunks.append(hard_wrong_labels(scores, train_y[start : start + batch_size], generator, self.options.negatives_per_positive))
        self.hard_labels = torch.cat(chunks)

    @torch.no_grad()
    def _belief(self, net: LocalNet, x: torch.Tensor) -> torch.Tensor:
        """(B, C) scores that hard negatives are drawn from (`hard_belief`)."""
        if self.options.hard_belief == "first":
            return self.goodness_per_label(net, x, depth=1)[0]
        return self.predict(net, x)["goodness"]

    @torch.no_grad()
    def goodness_per_label(self, net: LocalNet, x: torch.Tensor, depth: Optional[int] = None) -> list[torch.Tensor]:
        """(B, C) goodness of the first `depth` blocks (all by default) for every candidate label, from one pass of B*C inputs (never differentiated)."""
        return [block.objective.score(out).view(x.shape[0], -1) for block, out in zip(net.blocks, net.forward_blocks(self.every_label_inputs(x), depth))]

    def every_label_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The B*C inputs that goodness classification scores: each image with every candidate label written in, image by image."""
        return overlay_every_label(x, self.data.num_classes, *self._label_range())

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        per_block = self.goodness_per_label(net, x)
        return block_and_summed_scores(net, per_block, self.options)

    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised activities of each block for the image with a neutral label (the paper's readout input)."""
        neutral = overlay_neutral(x, self.data.num_classes, *self._label_range())
        return probe_features(net.forward_blocks(neutral), self.options.probe_pool)

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.hard_labels is None else {"hard_labels": self.hard_labels}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.hard_labels = state.get("hard_labels")
