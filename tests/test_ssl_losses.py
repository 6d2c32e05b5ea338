"""Self-supervised losses against direct computations on tiny tensors, and at their known minima."""

from __future__ import annotations

import math

import pytest
import torch

from locallearn.nn.heads import PoolProjector
from locallearn.objectives.ssl import (
    BarlowTwinsLoss,
    InfoNCELoss,
    SSLObjective,
    VICRegLoss,
    barlow_twins_terms,
    embedding_spread,
    info_nce_terms,
    off_diagonal,
    vicreg_terms,
)
from locallearn.views.base import Views

# Columns 2-4 of the 4x4 Hadamard matrix: each has mean 0 and (biased) variance 1, and they are orthogonal.
WHITE = torch.tensor([[1.0, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]])


def pair(n: int = 6, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1, z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)


def test_off_diagonal_lists_every_entry_off_the_diagonal():
    m = torch.arange(9.0).view(3, 3)
    assert off_diagonal(m).tolist() == [1, 2, 3, 5, 6, 7]


def test_barlow_twins_matches_a_direct_computation():
    z1, z2 = pair()
    n, d = z1.shape
    standard = [[(z[:, i] - z[:, i].mean()) / z[:, i].std(unbiased=False) for i in range(d)] for z in (z1, z2)]
    c = [[float((standard[0][i] * standard[1][j]).sum()) / n for j in range(d)] for i in range(d)]
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    got_on, got_off = barlow_twins_terms(z1.double(), z2.double(), eps=0.0)
    assert float(got_on) == pytest.approx(on, rel=1e-5)
    assert float(got_off) == pytest.approx(off, rel=1e-5)
    loss, metrics = BarlowTwinsLoss(lambd=0.01)(z1, z2)
    assert float(loss) == pytest.approx(on + 0.01 * off, rel=1e-3)  # the module standardises with eps = 1e-5, as BatchNorm
    assert set(metrics) == {"on_diag", "off_diag"}


def test_barlow_twins_is_zero_when_the_cross_correlation_is_the_identity():
    loss, _ = BarlowTwinsLoss()(WHITE, WHITE)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    shifted = 3 * WHITE + torch.tensor([1.0, -2.0, 5.0])  # each dimension is standardised: scale and shift do not matter
    assert float(BarlowTwinsLoss()(WHITE, shifted)[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(BarlowTwinsLoss()(WHITE, -WHITE)[0]) == pytest.approx(3 * 4.0, rel=1e-4)  # c = -I: every (1 - c_ii)^2 = 4


def test_vicreg_matches_a_direct_computation():
    z1, z2 = pair()
    n, d = z1.shape
    invariance = float(((z1 - z2) ** 2).sum()) / (n * d)
    variance = covariance = 0.0
    for z in (z1, z2):
        centred = z - z.mean(0)
        for i in range(d):
            std = math.sqrt(float((centred[:, i] ** 2).sum()) / (n - 1) + 1e-4)
            variance += max(0.0, 1 - std) / d / 2
            for j in range(d):
                if i != j:
                    covariance += (float((centred[:, i] * centred[:, j]).sum()) / (n - 1)) ** 2 / d
    got = vicreg_terms(z1, z2)
    assert [float(t) for t in got] == pytest.approx([invariance, variance, covariance], rel=1e-5)
    loss, metrics = VICRegLoss(25, 25, 1)(z1, z2)
    assert float(loss) == pytest.approx(25 * invariance + 25 * variance + covariance, rel=1e-5)
    assert set(metrics) == {"invariance", "variance", "covariance"}


def test_vicreg_is_zero_for_identical_spread_decorrelated_views_and_penalises_collapse():
    assert float(VICRegLoss()(2 * WHITE, 2 * WHITE)[0]) == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.ones(4, 3)
    _, variance, _ = vicreg_terms(collapsed, collapsed)
    assert float(variance) == pytest.approx(1 - math.sqrt(1e-4), rel=1e-5)  # every std is 0: hinge 1 - sqrt(eps), both branches halved


def test_info_nce_matches_a_direct_computation():
    z1, z2 = pair(n=5, d=3)
    t = 0.5
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        others = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[positive]) / t) / others)
    loss, accuracy = info_nce_terms(z1, z2, t)
    assert float(loss) == pytest.approx(total / n2, rel=1e-5)
    assert 0 <= float(accuracy) <= 1
    assert float(InfoNCELoss(t)(z1, z2)[0]) == pytest.approx(total / n2, rel=1e-5)


def test_info_nce_at_its_minimum_and_at_collapse():
    n, t = 3, 0.1
    eye = torch.eye(n)  # positives identical, every negative orthogonal
    loss, accuracy = info_nce_terms(eye, eye, t)
    assert float(loss) == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / t)), abs=1e-6)
    assert float(accuracy) == 1.0
    same = torch.ones(n, 4)  # collapse: all 2n - 1 candidates equally similar
    assert float(info_nce_terms(same, same, t)[0]) == pytest.approx(math.log(2 * n - 1), rel=1e-5)


def test_embedding_spread_is_one_when_spread_and_zero_when_collapsed():
    assert float(embedding_spread(torch.ones(16, 8))) == 0.0
    spread = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0))
    assert float(embedding_spread(spread)) == pytest.approx(1.0, abs=0.05)


def test_ssl_objective_compares_the_two_halves_through_its_head():
    head = PoolProjector(3, expand=0, widths=[])  # global average pool only
    objective = SSLObjective(head, BarlowTwinsLoss())
    view = WHITE.view(4, 3, 1, 1).expand(4, 3, 2, 2)
    loss, metrics = objective(torch.cat([view, view]), Views(inputs=torch.empty(0), num_positive=4))
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    assert {"loss", "on_diag", "off_diag", "spread"} <= set(metrics)
    assert all(not v.requires_grad for v in metrics.values())


def test_pool_projector_shapes_and_parameters():
    head = PoolProjector(16, expand=32, widths=[64, 8])
    assert head(torch.randn(4, 16, 5, 5)).shape == (4, 8)
    assert head(torch.randn(4, 16)).shape == (4, 8)  # an MLP block's output
    assert head.out_features == 8
    assert PoolProjector(16)(torch.randn(4, 16, 3, 3)).shape == (4, 16)
