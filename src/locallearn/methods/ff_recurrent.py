"""Recurrent Forward-Forward (Hinton, 2022, section 4): top-down effects in a recurrent net.

The static image is treated as a video: the net (`locallearn.nn.recurrent`) runs
`iterations` synchronous, damped time steps with the image clamped below the first hidden
layer and a label (one-hot) clamped above the last. Positives carry the true label,
negatives a wrong one (uniform, or hard: drawn from the model's own belief). At every time
step each layer's FF goodness loss is local: it reads its neighbours' detached states of the
step before, so no gradient crosses a layer or goes back in time. A layer's losses are
averaged over the steps and it takes one optimizer step per batch.

An image is classified by running the net with every candidate label clamped, all labels in
one (B*C) batch, and picking the label whose goodness, summed over the layers and averaged
over `scored_iterations` (the paper: 3-5 of 8), is highest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator

from locallearn.errors import UsageError
from locallearn.methods.base import Method
from locallearn.methods.ff_common import FFOptions, ScoreOptions, block_and_summed_scores, ff_objective, probe_features
from locallearn.nn.network import LocalNet
from locallearn.nn.recurrent import initial_states, recurrent_layers, scored_mean, time_step
from locallearn.objectives.goodness import FFGoodnessLoss
from locallearn.views.base import Views
from locallearn.views.labels import hard_wrong_labels, uniform_wrong_labels


class FFRecurrentOptions(FFOptions, ScoreOptions):
    """`method.*` keys of recurrent FF (the FF goodness keys as in `ff-supervised`)."""

    iterations: int = Field(8, gt=0, description="time steps the net runs on each training batch, every one with a local loss per layer (the paper: 8)")
    damping: float = Field(0.3, ge=0, lt=1, description="share of a layer's previous state kept at each step: new = damping*old + (1-damping)*computed (the paper: 0.3)")
    scored_iterations: list[int] = Field(default_factory=lambda: [3, 4, 5], description="time steps (1-based, increasing) whose goodness, averaged, classifies an image (the paper: 3, 4, 5)")
    negatives: Literal["uniform", "hard"] = Field("uniform", description="wrong labels of the negatives: uniform, or hard (drawn from the classifier's own belief, refreshed over the training set)")
    negatives_per_positive: int = Field(1, gt=0, description="distinct wrong labels each positive is shown with; together the negatives weigh as much as the positives")
    hard_refresh_epochs: int = Field(1, gt=0, description="with hard negatives, the belief is recomputed every this many epochs (one classification pass over the training set)")

    @field_validator("scored_iterations")
    @classmethod
    def _increasing_trained_steps(cls, steps: list[int], info: ValidationInfo) -> list[int]:
        if not steps or steps[0] < 1 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError("must be a non-empty, increasing list of time steps counted from 1")
        iterations = info.data.get("iterations", steps[-1])
        if steps[-1] > iterations:
            raise ValueError(f"reaches past the {iterations} iterations the net is trained on (method.iterations); score only trained steps")
        return steps


@dataclass
class RecurrentViews(Views):
    """`top`: the one-hot label clamped above the last layer for every row of `inputs` (true for positives, wrong for negatives)."""

    top: Optional[torch.Tensor] = None


class FFRecurrent(Method):
    """Recurrent FF: builds its own net (`build_layers`) and runs its time steps (`train_step`).

    Data parallel works as for any method (each time step is one forward and one backward
    of every block, so DistributedDataParallel averages every step's gradients); a pipeline
    cannot, and is refused.
    """

    name = "ff-recurrent"
    Options = FFRecurrentOptions
    primary = "goodness"
    supports_pipeline = False  # every layer reads the layer above it at the step before: no stage can run ahead of the next one

    def __init__(self, options: FFRecurrentOptions, data):
        super().__init__(options, data)
        if options.negatives_per_positive >= data.num_classes:
            raise UsageError(f"method.negatives_per_positive={options.negatives_per_positive} asks for more wrong labels than there are: "
                             f"the data has {data.num_classes} classes, so at most {data.num_classes - 1}")
        self.num_layers: int | None = None
        self.hard_labels: torch.Tensor | None = None

    @property
    def goodness_kind(self) -> str:
        return self.options.goodness

    def build_layers(self, model, image_shape: tuple[int, ...]):
        """The recurrent MLP of widths `model.hidden` between the flattened image and the label."""
        if model.arch != "mlp":
            raise UsageError(f"method ff-recurrent builds its own recurrent MLP from model.hidden, not model.arch={model.arch}; use model.arch=mlp")
        if model.dropout or model.input_dropout or model.out_norm != "none":
            raise UsageError("method ff-recurrent has no dropout or output BatchNorm; use model.dropout=0, model.input_dropout=0 and model.out_norm=none")
        self.num_layers = len(model.hidden)
        return recurrent_layers(math.prod(image_shape), model.hidden, self.data.num_classes, self.options.damping, model.activation, model.input_norm)

    def objective(self, index: int, num_blocks: int, width: int) -> FFGoodnessLoss:
        if num_blocks != self.num_layers:
            raise UsageError("method ff-recurrent trains every layer on its own goodness at every time step; use train.granularity=layer")
        return ff_objective(self.options, width)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.data.num_classes).float()

    def make_views(self, x, y, index, generator) -> RecurrentViews:
        count = self.options.negatives_per_positive
        if self.options.negatives == "hard" and self.hard_labels is not None:
            wrong = self.hard_labels[index]
        else:
            wrong = uniform_wrong_labels(y, self.data.num_classes, generator, count)
        top = self.one_hot(torch.cat([y, wrong.t().flatten()]))
        return RecurrentViews(inputs=torch.cat([x] * (count + 1)), num_positive=x.shape[0], labels=y, top=top)

    def train_step(self, blocks, optimizers, views: RecurrentViews, precision: str = "fp32"):
        """`iterations` time steps on the views; each layer's loss at each step (averaged over the steps) updates that layer alone.

        Every step backpropagates at once (the layers' graphs are disjoint, their inputs detached),
        so only one step's activations are alive; the optimizers step once, after the last.
        """
        image, steps = views.inputs.flatten(1), self.options.iterations
        autocast = lambda: torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        with torch.no_grad(), autocast():
            states = initial_states(blocks, image)
        sums: list[dict[str, torch.Tensor]] = [{} for _ in blocks]
        for _ in range(steps):
            with autocast():
                results = time_step(blocks, states, image, views.top, views)
            (sum(loss for _, loss, _ in results) / steps).backward()
            states = [out.detach() for out, _, _ in results]  # the cut between layers and between time steps
            for totals, (_, _, metrics) in zip(sums, results):
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
        for optimizer in optimizers:
            optimizer.step()
        return [{key: value / steps for key, value in totals.items()} for totals in sums], states[-1]

    @torch.no_grad()
    def goodness_per_label(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C) goodness of each layer for every candidate label, averaged over `scored_iterations`, from one run of B*C examples."""
        b, c = x.shape[0], self.data.num_classes
        image = x.flatten(1).repeat_interleave(c, dim=0)
        top = self.one_hot(torch.arange(c, device=x.device).repeat(b))
        scores = scored_mean(net.blocks, image, top, self.options.scored_iterations, lambda block, state: block.objective.score(state))
        return [score.view(b, c) for score in scores]

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return block_and_summed_scores(net, self.goodness_per_label(net, x), self.options)

    @torch.no_grad()
    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's state averaged over `scored_iterations` with a neutral label (all classes equal) clamped on top."""
        top = torch.full((x.shape[0], self.data.num_classes), 1.0 / self.data.num_classes, device=x.device)
        return probe_features(scored_mean(net.blocks, x.flatten(1), top, self.options.scored_iterations), self.options.probe_pool)

    def start_epoch(self, net, epoch, train_x, train_y, generator, batch_size) -> None:
        if self.options.negatives != "hard" or epoch % self.options.hard_refresh_epochs:
            return
        if train_x is None:
            raise UsageError("method.negatives=hard classifies the whole training set in memory, which this dataset (data.name=imagefolder) "
                             "does not hold; use method.negatives=uniform")
        chunks = []
        for start in range(0, train_x.shape[0], batch_size):
            scores = self.predict(net, train_x[start : start + batch_size])["goodness"]
            chunks.append(hard_wrong_labels(scores, train_y[start : start + batch_size], generator, self.options.negatives_per_positive))
        self.hard_labels = torch.cat(chunks)

    def state(self) -> dict[str, torch.Tensor]:
        return {} if self.hard_labels is None else {"hard_labels": self.hard_labels}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.hard_labels = state.get("hard_labels")
