"""Forward-Forward goodness and its losses (Hinton, 2022), as pure functions and a module.

Goodness is how "active" a layer is for an example: the sum (or mean) of its squared
activities. Each FF layer learns to give positives high and negatives low goodness.
For layers with spatial outputs, goodness may also be taken per position and/or per
group of channels: each such goodness is then one example of the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from locallearn.errors import UsageError


def goodness(activity: torch.Tensor, kind: str = "sum") -> torch.Tensor:
    """Per-example goodness of a (B, ...) activity tensor: sum or mean of squares -> (B,)."""
    squares = activity.flatten(1).square()
    return squares.sum(dim=1) if kind == "sum" else squares.mean(dim=1)


def grouped_goodness(activity: torch.Tensor, kind: str = "sum", over: str = "example", groups: int = 1) -> torch.Tensor:
    """Goodness of each group of units of a (B, C, ...) activity -> (B, K).

    The C channels (units of a dense layer) are split into `groups` consecutive groups.
    `over="example"`: a group's goodness covers all its positions (K = groups);
    `over="position"`: every position of every group has its own (K = groups * positions).
    """
    b, c = activity.shape[:2]
    squares = activity.reshape(b, groups, c // groups, -1).square()
    dims = (2, 3) if over == "example" else (2,)
    g = squares.sum(dim=dims) if kind == "sum" else squares.mean(dim=dims)
    return g.flatten(1)


def softplus_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, threshold: float, temperature: float = 1.0) -> torch.Tensor:
    """The paper's loss: -log p(positive) with p = sigmoid((goodness - threshold) / temperature).

    At temperature 1 (the paper's) a goodness summed over thousands of units makes the loss a
    hinge at the threshold; a higher temperature keeps pulling examples already on the right
    side, towards a margin. Positives and negatives weigh half each, however many (k)
    negatives there are per positive; written so that k = 1 is bit for bit the mean over all
    examples.
    """
    k = g_neg.shape[0] // g_pos.shape[0]
    pos, neg = (threshold - g_pos) / temperature, (g_neg - threshold) / temperature
    return torch.cat([F.softplus(pos).flatten(), F.softplus(neg).flatten() / k]).mean() * ((k + 1) / 2)


def symba_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, alpha: float) -> torch.Tensor:
    """SymBa (Lee & Song, 2023): softplus(-alpha * (g_pos - g_neg)), each negative paired with its positive.

    With k negatives per positive, `g_neg` holds k groups in the positives' order.
    """
    return F.softplus(-alpha * (torch.cat([g_pos] * (g_neg.shape[0] // g_pos.shape[0])) - g_neg)).mean()


def peer_normalisation_loss(running_mean: torch.Tensor) -> torch.Tensor:
    """Penalty pushing every unit's mean activity towards the layer's average (Hinton's peer normalisation)."""
    return (running_mean - running_mean.mean()).square().mean()


class FFGoodnessLoss(nn.Module):
    """Local FF objective for a block whose output holds positives first, then negatives.

    `over` and `groups` choose the units of one goodness (see `grouped_goodness`); the
    default threshold is the number of those units for sum goodness, 1 for mean, and
    SymBa's default sharpness 4 divided by it, so that sum and mean give the same loss.
    Peer normalisation keeps a running mean activity per unit (per channel of spatial
    outputs).

    Example:
        >>> loss_fn = FFGoodnessLoss(width=500, goodness_kind="sum")
        >>> loss, metrics = loss_fn(layer_output, views)  # views.num_positive rows are positives
    """

    def __init__(
        self,
        width: int,
        goodness_kind: str = "sum",
        loss: str = "softplus",
        threshold: float | None = None,
        temperature: float = 1.0,
        symba_alpha: float | None = None,
        peer_weight: float = 0.0,
        peer_momentum: float = 0.9,
        over: str = "example",
        groups: int = 1,
    ):
        super().__init__()
        if width % groups:
            raise UsageError(f"goodness groups ({groups}) must divide the width of every block; a block has width {width}")
        self.goodness_kind = goodness_kind
        self.loss = loss
        self.threshold = threshold
        self.temperature = temperature
        self.over = over
        self.groups = groups
        self.symba_alpha = symba_alpha
        self.peer_weight = peer_weight
        self.peer_momentum = peer_momentum
        if peer_weight > 0:
            self.register_buffer("running_mean", torch.zeros(width))

    def forward(self, out: torch.Tensor, views) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g = grouped_goodness(out, self.goodness_kind, self.over, self.groups)
        g_pos, g_neg = g[: views.num_positive], g[views.num_positive :]
        if self.loss == "symba":
            loss = symba_loss(g_pos, g_neg, 4.0 / self.default_threshold(out, g) if self.symba_alpha is None else self.symba_alpha)
        else:
            loss = softplus_loss(g_pos, g_neg, self.default_threshold(out, g) if self.threshold is None else self.threshold, self.temperature)
        metrics = {"ff_loss": loss.detach(), "g_pos": g_pos.detach().mean(), "g_neg": g_neg.detach().mean()}
        if self.peer_weight > 0:
            unit_means = out[: views.num_positive].transpose(0, 1).flatten(1).mean(dim=1)  # per unit (or channel)
            running = self.peer_momentum * self.running_mean + (1 - self.peer_momentum) * unit_means
            self.running_mean.copy_(running.detach())
            peer = peer_normalisation_loss(running)
            loss = loss + self.peer_weight * peer
            metrics["peer_loss"] = peer.detach()
        metrics["loss"] = loss.detach()
        return loss, metrics

    def default_threshold(self, out: torch.Tensor, g: torch.Tensor) -> float:
        """Units per goodness for sum goodness (the mean square of each is then ~1), else 1."""
        return out[0].numel() / g.shape[1] if self.goodness_kind == "sum" else 1.0

    def score(self, out: torch.Tensor) -> torch.Tensor:
        """Goodness per example: what goodness classification compares across labels."""
        return goodness(out, self.goodness_kind)
