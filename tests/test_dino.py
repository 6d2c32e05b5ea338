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
from locallearn.errors import UsageError
from locallearn.evaluate import linear_probes
from locallearn.nn.heads import DINOHead
from locallearn.objectives.dino import DINOLoss, dino_terms
from locallearn.views.augment import AugmentOptions, crop_boxes
from locallearn.views.multicrop import multi_crop

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.channels=[4,8]", "model.pool=[2,1]", "train.granularity=layer", "data.batch_size=16", "train.epochs=1", "logging.progress=false",
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
    torch.manual_seed(0)
    head = DINOHead(6, widths=[16, 8], prototypes=32)
    out = head(torch.randn(4, 6, 5, 5))
    assert out.shape == (4, 32) and head.out_features == 32
    assert out.abs().max() <= 1 + 1e-6
    head.eval()
    x = torch.randn(4, 6, 5, 5)
    before = head(x)
    with torch.no_grad():
        head.prototypes[3] *= 10  # the gain is fixed at 1: a prototype's length changes nothing
    torch.testing.assert_close(head(x), before, atol=1e-6, rtol=1e-5)  # cosines near 0 differ from rounding alone


def test_small_crop_boxes_cover_the_asked_fraction_of_the_image():
    w, h, _, _ = crop_boxes(1000, 12, 12, 0.1, 1.0, torch.Generator().manual_seed(0), max_scale=0.3).unbind(1)
    area = w * h  # half-sides in [-1, 1] coordinates are fractions of the image's sides
    assert 0.1 - 1e-6 <= float(area.min()) and float(area.max()) <= 0.3 + 1e-6 and float(area.max()) > 0.28


def test_multi_crop_batches_small_crops_apart_and_is_reproducible():
    x = torch.rand(3, 1, 12, 12)
    o = AugmentOptions(crop_scale=0.5, jitter=0.0)
    views = multi_crop(x, o, 0.0, 1.0, torch.Generator().manual_seed(0), count=4, size=6, scale=(0.1, 0.3))
    assert views.inputs.shape == (6, 1, 12, 12) and views.num_positive == 3
    assert views.local.shape == (12, 1, 6, 6)
    again = multi_crop(x, o, 0.0, 1.0, torch.Generator().manual_seed(0), count=4, size=6, scale=(0.1, 0.3))
    assert torch.equal(views.inputs, again.inputs) and torch.equal(views.local, again.local)
    assert multi_crop(x, o, 0.0, 1.0, torch.Generator().manual_seed(0), count=0, size=6, scale=(0.1, 0.3)).local is None


@pytest.fixture(scope="module")
def data():
    return prototype_splits(n_train=48, n_test=32, size=12)


def dino(*overrides: str):
    return load_config("blockwise-dino", [*TINY, *overrides])


def stop_after(trainer, steps: int):
    def progress(step, total, sums):
        trainer.stop_requested = step >= steps

    return progress


def test_the_teacher_is_a_frozen_copy_of_the_block_and_head_that_no_optimizer_holds(data):
    trainer = Trainer(dino(), data)
    held = {id(p) for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]}
    for block in trainer.net.blocks:
        teacher = block.objective.teacher
        assert all(not p.requires_grad and id(p) not in held for p in teacher.parameters())
        for student, copy in [(block.layers, teacher["layers"]), (block.objective.head, teacher["head"])]:
            assert all(torch.equal(s, t) for s, t in zip(student.state_dict().values(), copy.state_dict().values()))
        assert all(id(p) in held for p in [*block.layers.parameters(), *block.objective.head.parameters()])


def test_after_each_step_the_teacher_is_the_ema_of_its_student_and_the_centre_moved(data):
    trainer = Trainer(dino("method.dino.teacher_momentum=0.9"), data)
    block = trainer.net.blocks[1]
    before = [p.clone() for p in block.objective.teacher.parameters()]
    assert trainer.train_epoch(progress=stop_after(trainer, 1)) is None
    momentum = 0.9  # the cosine schedule starts at the base momentum (step 0)
    student = [*block.layers.parameters(), *block.objective.head.parameters()]
    for t0, t1, s in zip(before, block.objective.teacher.parameters(), student):
        assert torch.allclose(t1, momentum * t0 + (1 - momentum) * s, atol=1e-6)
    assert block.objective.loss.centre.abs().sum() > 0


def test_no_gradient_reaches_the_teacher_or_another_block(data):
    trainer = Trainer(dino("train.granularity=layer", "method.dino.local_crops=2", "method.dino.local_size=6"), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    first, second = trainer.net.blocks
    h = first(views.inputs, views)[0]
    _, loss, _ = second(h.detach(), views)
    loss.backward()
    assert all(p.grad is None for p in [*first.parameters(), *second.objective.teacher.parameters()])
    assert all(p.grad is not None for p in second.parameters() if p.requires_grad)


def test_small_crops_are_student_views_that_each_block_hands_on(data):
    trainer = Trainer(dino("method.dino.local_crops=3", "method.dino.local_size=6"), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    assert views.local.shape == (3 * 16, 1, 6, 6)
    first, second = trainer.net.blocks
    second(first(views.inputs, views)[0].detach(), views)
    assert views.local.shape[:2] == (3 * 16, 8) and not views.local.requires_grad  # the last block's features of the small crops


def test_stop_inside_an_epoch_and_resume_is_exact_with_teacher_centre_and_small_crops(tmp_path, data):
    run = dino("train.epochs=2", "method.dino.local_crops=2", "method.dino.local_size=6")
    reference = Trainer(run, data)
    for _ in range(2):
        reference.train_epoch()
    first = Trainer(run, data)
    first.train_epoch()
    assert first.train_epoch(progress=stop_after(first, 1)) is None
    save_checkpoint(tmp_path, first, {})
    resumed = Trainer(run, data)
    load_checkpoint(tmp_path, resumed)
    resumed.train_epoch()
    state = resumed.net.state_dict()
    assert any(".teacher." in name for name in state) and any(name.endswith("centre") for name in state)
    for (name, mine), theirs in zip(state.items(), reference.net.state_dict().values()):
        assert torch.equal(mine, theirs), name


def test_blockwise_and_end_to_end_dino_differ_only_in_the_cut():
    blockwise, e2e = load_config("blockwise-dino").model_dump(), load_config("e2e-dino").model_dump()
    assert blockwise["train"].pop("granularity") == "block:4" and e2e["train"].pop("granularity") == "end-to-end"
    for key in ("description", "summary"):
        del blockwise[key], e2e[key]
    assert blockwise == e2e


def test_a_tiny_blockwise_dino_run_beats_random_weights():
    """Views that differ only in pixel noise: the blocks learn to see through it, so the last block's probe improves."""
    torch.manual_seed(0)
    noisy = prototype_splits(n_train=600, n_test=300, size=12, noise=3.0)
    run = dino(
        "model.channels=[16,16]", "model.pool=[1,2]", "train.granularity=layer", "train.epochs=6", "data.batch_size=100",
        "optim.lr=0.003", "method.projector=[64,32]", "method.dino.prototypes=64", "method.dino.teacher_momentum=0.9", "method.probe_pool=2",
        "method.augment={crop_scale: 1.0, crop_ratio: 1.0, flip: 0.0, jitter: 0.0, noise: 0.5}",
    )
    trainer = Trainer(run, noisy)

    def last_probe() -> float:
        return linear_probes(trainer.method, trainer.net, noisy, [1], epochs=10, lr=1e-2, seed=0, batch_size=300)["layer2"]["test"]

    random_weights = last_probe()
    for _ in range(run.train.epochs):
        trainer.train_epoch()
    assert last_probe() > random_weights + 0.03  # seeds 0 and 1 (data and run): +0.047 and +0.063


def test_small_crops_refuse_the_pipeline_modes_in_one_line(data):
    Trainer(dino("distributed.devices=[cpu,cpu]"), data)  # without small crops the blocks may be spread over devices
    with pytest.raises(UsageError, match="pipeline|devices"):
        Trainer(dino("distributed.devices=[cpu,cpu]", "method.dino.local_crops=2"), data)
