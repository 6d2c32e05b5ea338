"""The top-down recurrent network of Hinton (2022, section 4): a static image treated as a video.

Each hidden layer's next state is computed from the normalised states of the layer below
and the layer above at the previous time step, all layers at once (synchronous), and damped:
`new = damping * old + (1 - damping) * computed`. Below the first hidden layer is the image,
above the last the label (one-hot); both are clamped. The states a layer reads are detached,
so a layer's loss at a time step reaches only that layer's weights, through that step alone.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from locallearn.nn.layers import ACTIVATIONS, InputNorm


class RecurrentLayer(nn.Module):
    """One hidden layer: `act(W_up norm(below) + W_down norm(above) + b)`, damped towards its previous state.

    Called with `(below, above, previous)`; `above=None` leaves out the top-down input and
    `previous=None` the damping (the first, bottom-up pass that initialises the states).
    """

    def __init__(self, below: int, above: int, width: int, damping: float = 0.3, activation: str = "relu", input_norm: str = "rms"):
        super().__init__()
        self.norm = InputNorm(input_norm)
        self.bottom_up = nn.Linear(below, width)
        self.top_down = nn.Linear(above, width, bias=False)
        self.activation = ACTIVATIONS[activation]()
        self.damping = damping
        self.out_features = width

    def forward(self, inputs: tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]) -> torch.Tensor:
        below, above, previous = inputs
        drive = self.bottom_up(self.norm(below))
        if above is not None:
            drive = drive + self.top_down(self.norm(above))
        computed = self.activation(drive)
        return computed if previous is None else self.damping * previous + (1 - self.damping) * computed

    def extra_repr(self) -> str:
        return f"damping={self.damping}"


def recurrent_layers(image_features: int, hidden: list[int], num_classes: int, damping: float, activation: str, input_norm: str) -> list[RecurrentLayer]:
    """The hidden layers of widths `hidden` between an image of `image_features` pixels and a `num_classes` label."""
    below, above = [image_features, *hidden[:-1]], [*hidden[1:], num_classes]
    return [RecurrentLayer(b, a, w, damping, activation, input_norm) for b, w, a in zip(below, hidden, above)]


def initial_states(blocks, image: torch.Tensor) -> list[torch.Tensor]:
    """The states at time 0: one bottom-up pass, each layer driven by the (new) state below it alone."""
    states, below = [], image
    for block in blocks:
        below = block((below, None, None))
        states.append(below)
    return states


def time_step(blocks, states: list[torch.Tensor], image: torch.Tensor, top: torch.Tensor, views=None) -> list:
    """One synchronous, damped update of every layer from its neighbours' `states` (detached) at the previous step.

    Without `views` it returns the new states; with them each block's `(state, loss, metrics)`.
    """
    below, above = [image, *states[:-1]], [*states[1:], top]
    return [block((b, a, s), views) for block, b, a, s in zip(blocks, below, above, states)]


def scored_mean(blocks, image: torch.Tensor, top: torch.Tensor, scored: list[int], measure: Callable = lambda block, state: state) -> list[torch.Tensor]:
    """Each layer's `measure(block, state)` (default: the state) averaged over the time steps in `scored` (1-based).

    The net runs only as far as the last scored step (later steps cannot change the average),
    and only one running sum per layer is kept.
    """
    states = initial_states(blocks, image)
    sums: list = [0.0] * len(blocks)
    for t in range(1, max(scored) + 1):
        states = time_step(blocks, states, image, top)
        if t in scored:
            sums = [total + measure(block, state) for total, block, state in zip(sums, blocks, states)]
    return [total / len(scored) for total in sums]
