"""Block-wise DINO: the loss against a direct computation, the running centre, the head, multi-crop
views, the teacher (frozen, an EMA of its block and head), locality, exact resume, and learning."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import gradient_leaks, prototype_splits
from locallearn.checkpoint import load_checkpoint, save_checkpoint
from locallearn.config import load_config
from locallearn.engine import Trainer
from locallearn.evaluate import linear_probes
from locallearn.nn.heads import DINOHead
from locallearn.objectives.dino import DINOLoss, dino_terms
from locallearn.views.augment import AugmentOptions
from locallearn.views.multicrop import multi_crop

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.channels=[4,8]", "model.pool=[2,1]", "data.batch_size=16", "train.epochs=1", "logging.progress=false",
        "eval.probe_epochs=2", "method.projector=[16,8]", "method.dino.prototypes=32"]


def scores(views: int, n: int = 5, k: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(views, n, k, generator=torch.Generator().manual_seed(seed))


def test_dino_loss_matches_a_direct_computation():
    student, teacher, centre = scores(4), scores(2, seed=1), torch.randn(7, generator=torch.Generator().manual_seed(2))
    total, pairs = 0.0, 0
    for i in range(2):
        for j in range(4):
            if i == j:
                continue
            for b in range(5):
                t = [math.exp((teacher[i, b, k] - centre[k]) / 0.04) for k in range(7)]
                s = [math.exp(student[j, b, k] / 0.1) for k in range(7)]
                total += -sum(t[k] / sum(t) * math.log(s[k] / sum(s)) for k in range(7)) / 5
            pairs += 1
    loss, entropy = dino_terms(student, teacher, centre, 0.1, 0.04)
    assert float(loss) == pytest.approx(total / pairs, rel=1e-5)
    assert 0 < float(entropy) < math.log(7)


def test_dino_loss_gives_the_student_a_gradient_and_the_teacher_none():
    student, teacher = scores(2).requires_grad_(), scores(2, seed=1).requires_grad_()
    loss, _ = DINOLoss(7)(student, teacher)
    loss.backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


def test_the_centre_is_a_buffer_moved_towards_the_batch_mean_after_the_step():
    loss = DINOLoss(7, centre_momentum=0.9)
    assert "centre" in dict(loss.named_buffers())
    teacher = scores(2, seed=1)
    loss(scores(2), teacher)
    assert torch.equal(loss.centre, torch.zeros(7))  # the forward only reads it
    loss.update_centre()
    assert torch.allclose(loss.centre, 0.1 * teacher.mean(dim=(0, 1)))
    loss.update_centre()  # nothing new seen: no change
    assert torch.allclose(loss.centre, 0.1 * teacher.mean(dim=(0, 1)))


def test_the_dino_head_scores_are_cosines_to_unit_norm_prototypes():
    head = DINOHead(6, widths=[16, 8], prototypes=32)
    out = head(torch.randn(4, 6, 5, 5))
    assert out.shape == (4, 32) and head.out_features == 32
    assert out.abs().max() <= 1 + 1e-6
    head.eval()
    x = torch.randn(4, 6, 5, 5)
    before = head(x)
    with torch.no_grad():
        head.prototypes[3] *= 10  # the gain is fixed at 1: a prototype's length changes nothing
    assert torch.allclose(head(x), before)


def test_multi_crop_batches_small_crops_apart_and_is_reproducible():
    x = torch.rand(3, 1, 12, 12)
    o = AugmentOptions(crop_scale=0.5, jitter=0.0)
    views = multi_crop(x, o, 0.0, 1.0, torch.Generator().manual_seed(0), count=4, size=6, scale=(0.1, 0.3))
    assert views.inputs.shape == (6, 1, 12, 12) and views.num_positive == 3
    assert views.local.shape == (12, 1, 6, 6)
    again = multi_crop(x, o, 0.0, 1.0, torch.Generator().manual_seed(0), count=4, size=6, scale=(0.1, 0.3))
    assert torch.equal(views.inputs, again.inputs) and torch.equal(views.local, again.local)
    assert multi_crop(x, o, 0.0, 1.0, torch.Generator().manual_seed(0), count=0, size=6, scale=(0.1, 0.3)).local is None
