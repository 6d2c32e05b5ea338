"""Self-supervised local objectives: InfoNCE (SimCLR's NT-Xent), VICReg and Barlow Twins.

The math is in pure functions of two embedding batches `z1`, `z2` (row i of each is a
view of the same image), each tested against a direct computation. The loss modules
wrap them as `(loss, metrics)`; `SSLObjective` puts a head (pooling + projector, see
`locallearn.nn.heads`) in front of a loss, so that a block's optimizer trains the head
with the block. Losses are computed in float32 whatever the autocast dtype.

Example:
    >>> objective = SSLObjective(PoolProjector(256, widths=[512, 512]), BarlowTwinsLoss(lambd=5e-3))
    >>> loss, metrics = objective(block_output, views)   # views.inputs = [view 1; view 2]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def info_nce_terms(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """NT-Xent (Chen et al. 2020) over the 2N embeddings, and how often the positive is the nearest.

    Each embedding's positive is the other view of its image; the other 2N - 2 are its
    negatives. Similarities are cosines divided by `temperature`.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    targets = torch.arange(2 * n, device=z.device).roll(n)
    loss = F.cross_entropy(logits, targets)
    accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return loss, accuracy


def vicreg_terms(z1: Tensor, z2: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """VICReg's invariance, variance and covariance terms (Bardes et al. 2022), unweighted.

    invariance: mean squared distance of the views; variance: mean hinge `relu(1 - std)`
    of every dimension's std over the batch, averaged over the two branches; covariance:
    sum of squared off-diagonal covariances divided by the dimension, summed over branches.
    """
    z1, z2 = z1.float(), z2.float()
    invariance = F.mse_loss(z1, z2)
    variance = covariance = 0.0
    for z in (z1, z2):
        z = z - z.mean(dim=0)
        variance = variance + F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean() / 2
        cov = z.T @ z / (z.shape[0] - 1)
        covariance = covariance + off_diagonal(cov).square().sum() / z.shape[1]
    return invariance, variance, covariance


def barlow_twins_terms(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Barlow Twins (Zbontar et al. 2021): the on- and off-diagonal terms of the cross-correlation.

    Each dimension is standardised over the batch (biased std, as BatchNorm); with `c` the
    (D, D) cross-correlation of the two views, returns `sum((1 - c_ii)^2)` and `sum_{i!=j} c_ij^2`.
    Both are 0 exactly when `c` is the identity.
    """
    z1, z2 = z1.float(), z2.float()
    a = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    b = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    c = a.T @ b / z1.shape[0]
    return (1 - c.diagonal()).square().sum(), off_diagonal(c).square().sum()


class InfoNCELoss(nn.Module):
    """SimCLR's NT-Xent loss on two batches of embeddings.

    Example:
        >>> loss, metrics = InfoNCELoss(temperature=0.1)(z1, z2)   # metrics["pair_acc"]: positive ranked first
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        loss, accuracy = info_nce_terms(z1, z2, self.temperature)
        return loss, {"pair_acc": accuracy}


class VICRegLoss(nn.Module):
    """VICReg: `sim_weight * invariance + var_weight * variance + cov_weight * covariance` (paper: 25, 25, 1).

    Example:
        >>> loss, metrics = VICRegLoss()(z1, z2)
    """

    def __init__(self, sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0):
        super().__init__()
        self.weights = (sim_weight, var_weight, cov_weight)

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        terms = vicreg_terms(z1, z2)
        loss = sum(w * t for w, t in zip(self.weights, terms))
        return loss, {name: t.detach() for name, t in zip(("invariance", "variance", "covariance"), terms)}


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins: `on_diagonal + lambd * off_diagonal` (paper: lambd = 5.1e-3).

    Example:
        >>> loss, metrics = BarlowTwinsLoss(lambd=5.1e-3)(z1, z2)
    """

    def __init__(self, lambd: float = 5.1e-3):
        super().__init__()
        self.lambd = lambd

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        on, off = barlow_twins_terms(z1, z2)
        return on + self.lambd * off, {"on_diag": on.detach(), "off_diag": off.detach()}


def embedding_spread(z: Tensor) -> Tensor:
    """Std over the batch of the L2-normalised embeddings, times sqrt(D): about 1 when spread, 0 when collapsed."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean() * z.shape[1] ** 0.5


class SSLObjective(nn.Module):
    """A block's self-supervised objective: `head` maps its output to embeddings, `loss` compares the two views.

    The block's output holds view 1 (`views.num_positive` rows) then view 2 of the same images.
    """

    def __init__(self, head: nn.Module, loss: nn.Module):
        super().__init__()
        self.head = head
        self.loss = loss

    def forward(self, out: Tensor, views) -> tuple[Tensor, dict[str, Tensor]]:
        n = views.num_positive
        z = self.head(out)
        loss, metrics = self.loss(z[:n], z[n : 2 * n])
        return loss, {"loss": loss.detach(), **metrics, "spread": embedding_spread(z[:n])}
