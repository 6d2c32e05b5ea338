"""Supervised Forward-Forward: label overlay, negatives, goodness losses, batched classification, learning."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from helpers import random_images, tiny_config, tiny_splits
from locallearn.engine import Trainer
from locallearn.evaluate import classify
from locallearn.errors import UsageError
from locallearn.methods.ff_common import FFOptions, ff_objective
from locallearn.nn.backbones import build_backbone
from locallearn.nn.layers import DenseLayer
from locallearn.nn.noise import Dropout
from locallearn.objectives.goodness import FFGoodnessLoss, goodness, softplus_loss, symba_loss
from locallearn.views.base import Views
from locallearn.views.labels import hard_wrong_labels, overlay_every_label, overlay_labels, overlay_neutral, uniform_wrong_labels


def test_overlay_writes_one_hot_into_the_first_pixels_only():
    x = random_images(4)
    labels = torch.tensor([0, 3, 9, 3])
    out = overlay_labels(x, labels, 10, low=-1.0, high=2.0)
    flat = out.flatten(1)
    expected = torch.full((4, 10), -1.0)
    expected[torch.arange(4), labels] = 2.0
    assert torch.equal(flat[:, :10], expected)
    assert torch.equal(flat[:, 10:], x.flatten(1)[:, 10:])
    assert not torch.equal(x.flatten(1)[:, :10], expected)  # the input is left alone


def test_neutral_label_is_a_tenth_of_white_everywhere():
    out = overlay_neutral(random_images(2), 10, low=-1.0, high=2.0).flatten(1)
    assert torch.allclose(out[:, :10], torch.full((2, 10), -0.7))


def test_every_label_overlay_is_image_major():
    x = random_images(3)
    out = overlay_every_label(x, 10, -1.0, 2.0).flatten(1)
    assert out.shape[0] == 30
    for i in range(3):
        for c in range(10):
            row = out[i * 10 + c]
            assert row[c] == 2.0 and (row[:10] == 2.0).sum() == 1
            assert torch.equal(row[10:], x[i].flatten()[10:])


@given(st.lists(st.integers(0, 9), min_size=1, max_size=64), st.integers(1, 9), st.integers(0, 2**31))
def test_uniform_wrong_labels_are_distinct_and_never_the_true_one(labels, count, seed):
    y = torch.tensor(labels)
    wrong = uniform_wrong_labels(y, 10, torch.Generator().manual_seed(seed), count)
    assert wrong.shape == (len(labels), count)
    assert ((wrong != y.unsqueeze(1)) & (wrong >= 0) & (wrong < 10)).all()
    assert (wrong.sort(dim=1).values.diff(dim=1) > 0).all()


@pytest.mark.parametrize("count", [1, 3])
def test_uniform_wrong_labels_cover_all_other_classes_in_every_draw(count):
    y = torch.zeros(9000, dtype=torch.long)
    wrong = uniform_wrong_labels(y, 10, torch.Generator().manual_seed(0), count)
    for k in range(count):  # the k-th draw alone is uniform too, not only the set
        counts = torch.bincount(wrong[:, k], minlength=10)
        assert counts[0] == 0
        assert (counts[1:] > 850).all() and (counts[1:] < 1150).all()


def test_hard_wrong_labels_follow_the_belief_are_distinct_and_exclude_the_truth():
    scores = torch.tensor([[10.0, 9.0, 0.0, 0.0], [0.0, 20.0, 0.0, 0.0]]).repeat(500, 1)
    y = torch.tensor([0, 1]).repeat(500)
    wrong = hard_wrong_labels(scores, y, torch.Generator().manual_seed(0)).squeeze(1)
    assert (wrong != y).all()
    first = wrong[0::2]
    assert (first == 1).float().mean() > 0.95  # the most believed wrong label dominates
    pairs = hard_wrong_labels(scores, y, torch.Generator().manual_seed(0), count=3)
    assert (pairs != y.unsqueeze(1)).all() and (pairs.sort(dim=1).values.diff(dim=1) > 0).all()


def test_goodness_losses_match_the_formulas():
    g_pos, g_neg = torch.tensor([3.0, 5.0]), torch.tensor([1.0, 6.0])
    expected = (torch.log1p(torch.exp(4 - g_pos)).sum() + torch.log1p(torch.exp(g_neg - 4)).sum()) / 4
    assert softplus_loss(g_pos, g_neg, 4.0) == pytest.approx(float(expected))
    assert symba_loss(g_pos, g_neg, 2.0) == pytest.approx(float(torch.log1p(torch.exp(-2 * (g_pos - g_neg))).mean()))
    activity = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    assert goodness(activity, "sum").tolist() == [5.0, 9.0]
    assert goodness(activity, "mean").tolist() == [2.5, 4.5]


def test_symba_by_default_is_one_loss_for_sum_and_mean_goodness():
    """Sum goodness is `width` times the mean, so SymBa's default sharpness is divided by the width: at the paper's 4 a
    sum over hundreds of units would make the softplus a hinge with no margin (a 10k-example screen: 73% after 10 epochs)."""
    out = torch.randn(6, 50).relu()
    views = Views(inputs=torch.zeros(6, 50), num_positive=3)
    mean_loss, _ = FFGoodnessLoss(50, "mean", "symba")(out, views)
    sum_loss, _ = FFGoodnessLoss(50, "sum", "symba")(out, views)
    assert sum_loss.item() == pytest.approx(mean_loss.item(), rel=1e-6)
    g = out.square().mean(1)
    assert mean_loss.item() == pytest.approx(symba_loss(g[:3], g[3:], 4.0).item(), rel=1e-6)


def test_the_softplus_temperature_gives_a_margin_and_makes_sum_goodness_the_mean_one():
    """Mean goodness is the sum's loss at a temperature of the width (threshold 1 against the width); `method.temperature` reaches the loss."""
    out = torch.randn(6, 50).relu()
    views = Views(inputs=torch.zeros(6, 50), num_positive=3)
    mean_loss, _ = ff_objective(FFOptions(goodness="mean"), 50)(out, views)
    sum_loss, _ = ff_objective(FFOptions(goodness="sum", temperature=50.0), 50)(out, views)
    assert sum_loss.item() == pytest.approx(mean_loss.item(), rel=1e-6)
    past_threshold = torch.tensor([120.0], requires_grad=True)  # 20 above a threshold of 100
    for temperature in [1.0, 20.0]:  # the positive's pull: sigmoid(-20 / T) / T, halved by the mean over one positive and one negative
        softplus_loss(past_threshold, torch.tensor([0.0]), 100.0, temperature).backward()
        assert -past_threshold.grad.item() == pytest.approx(torch.sigmoid(torch.tensor(-20 / temperature)).item() / temperature / 2, rel=1e-5)
        past_threshold.grad = None


def test_several_negatives_per_positive_weigh_as_much_as_the_positives_and_pair_with_their_own_in_symba():
    g_pos, g_neg = torch.tensor([3.0, 5.0]), torch.tensor([1.0, 6.0, 2.0, 7.0])  # two groups of negatives, each in the positives' order
    pos_part = torch.log1p(torch.exp(4 - g_pos)).mean()
    neg_part = torch.log1p(torch.exp(g_neg - 4)).mean()
    assert softplus_loss(g_pos, g_neg, 4.0) == pytest.approx(float(pos_part + neg_part) / 2)
    paired = torch.log1p(torch.exp(-2 * (torch.tensor([3.0, 5.0, 3.0, 5.0]) - g_neg))).mean()
    assert symba_loss(g_pos, g_neg, 2.0) == pytest.approx(float(paired))


def test_each_positive_is_shown_with_distinct_wrong_labels_in_one_batched_pass(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path, "method.negatives_per_positive=3"), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    b = x.shape[0]
    assert views.num_positive == b and views.inputs.shape[0] == 4 * b
    shown = views.inputs.flatten(1)[:, :10].argmax(1).view(4, b)  # group 0: positives, then one group per negative
    assert torch.equal(shown[0], y)
    assert (shown[1:] != y).all() and (shown[1:].sort(dim=0).values.diff(dim=0) > 0).all()
    images = views.inputs.flatten(1)[:, 10:].view(4, b, -1)
    assert torch.equal(images, x.flatten(1)[:, 10:].expand(4, -1, -1))
    with pytest.raises(UsageError, match="at most 9"):
        Trainer(tiny_config("ff-bench", tmp_path, "method.negatives_per_positive=10"), data)


def test_ff_loss_falls_when_positives_grow_and_negatives_shrink():
    objective = FFGoodnessLoss(width=4)
    views = Views(inputs=torch.zeros(4, 4), num_positive=2)
    good = torch.cat([torch.full((2, 4), 2.0), torch.zeros(2, 4)])
    bad = torch.cat([torch.zeros(2, 4), torch.full((2, 4), 2.0)])
    assert objective(good, views)[0] < objective(bad, views)[0]


def test_peer_normalisation_penalises_unequal_units():
    objective = FFGoodnessLoss(width=4, peer_weight=1.0, peer_momentum=0.0)
    views = Views(inputs=torch.zeros(4, 4), num_positive=2)
    equal = torch.ones(4, 4)
    unequal = torch.tensor([[4.0, 0, 0, 0]]).repeat(4, 1)
    assert objective(equal, views)[1]["peer_loss"] == 0
    assert objective(unequal, views)[1]["peer_loss"] > 0


def test_batched_goodness_classification_equals_one_label_at_a_time(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path), data)
    trainer.train_epoch()
    x = data.test_x[:20]
    batched = trainer.method.goodness_per_label(trainer.net, x)
    for label in range(10):
        inputs = overlay_labels(x, torch.full((20,), label), 10, data.pixel_low, data.pixel_high)
        outputs = trainer.net.forward_blocks(inputs)
        for block, out, g in zip(trainer.net.blocks, outputs, batched):
            torch.testing.assert_close(g[:, label], goodness(out, "sum"))


@pytest.mark.parametrize("overrides", [[], ["method.negatives=hard"], ["method.loss=symba", "method.goodness=mean"], ["method.peer_weight=0.03"], ["model.dropout=0.2"], ["model.out_norm=batch"]])
def test_supervised_ff_learns_the_synthetic_task(tmp_path, overrides):
    """A few epochs on the synthetic bars data take goodness classification far above chance (10%)."""
    data = tiny_splits(tmp_path)
    config = tiny_config("ff-bench", tmp_path, "train.epochs=4", "optim.lr=0.01", "method.skip_first=false", *overrides)
    trainer = Trainer(config, data)
    before = classify(trainer.method, trainer.net, data.val_x, data.val_y, 200)
    for _ in range(4):
        trainer.train_epoch()
    after = classify(trainer.method, trainer.net, data.val_x, data.val_y, 200)
    assert after["goodness"] >= 0.8 and after["goodness"] > before["goodness"] + 0.3, (before, after)
    if not overrides:
        assert after["layer2"] > 0.3, after  # deeper layers learn too, from the detached output of the first


@pytest.mark.parametrize("skip_first, depth, summed", [(False, None, [1, 2, 3]), (True, None, [2, 3]), (False, 2, [1, 2]), (True, 2, [2]), (False, 9, [1, 2, 3])])
def test_the_classifier_sums_the_goodness_of_the_blocks_the_options_name(tmp_path, skip_first, depth, summed):
    data = tiny_splits(tmp_path)
    overrides = f"method.skip_first={str(skip_first).lower()}", f"method.score_depth={'null' if depth is None else depth}"
    trainer = Trainer(tiny_config("ff-bench", tmp_path, *overrides), data)
    scores = trainer.method.predict(trainer.net, data.val_x[:20])
    assert torch.equal(scores["goodness"], torch.stack([scores[f"layer{k}"] for k in summed]).sum(0))


@pytest.mark.parametrize("count", [1, 2])
def test_hard_negatives_come_from_the_models_belief(tmp_path, count):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path, "method.negatives=hard", f"method.negatives_per_positive={count}"), data)
    trainer.train_epoch()
    trainer.method.start_epoch(trainer.net, 1, data.train_x, data.train_y, torch.Generator().manual_seed(0), 200)
    hard = trainer.method.hard_labels
    assert hard.shape == (data.train_y.shape[0], count) and (hard != data.train_y.unsqueeze(1)).all()
    x, y, index = next(iter(trainer.batcher.batches(1)))
    views = trainer.method.make_views(x, y, index, torch.Generator())
    negatives = views.inputs[x.shape[0]:].flatten(1)[:, :10]
    assert torch.equal(negatives.argmax(1), hard[index].t().flatten())


@pytest.mark.parametrize("belief", ["classifier", "first"])
def test_hard_negatives_are_drawn_from_the_chosen_belief(tmp_path, belief):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path, "method.negatives=hard", f"method.hard_belief={belief}", "method.skip_first=true"), data)
    trainer.train_epoch()
    method, net, x, y = trainer.method, trainer.net, data.train_x, data.train_y
    method.start_epoch(net, 1, x, y, torch.Generator().manual_seed(0), x.shape[0])
    per_block = method.goodness_per_label(net, x)
    scores = per_block[0] if belief == "first" else sum(per_block[1:])
    assert torch.equal(method.hard_labels, hard_wrong_labels(scores, y, torch.Generator().manual_seed(0)))


def test_augmented_views_flip_the_image_and_then_write_the_label(tmp_path):
    data = tiny_splits(tmp_path)
    flip_all = "method.augment={crop_scale: 1.0, crop_ratio: 1.0, flip: 1.0, jitter: 0.0}"
    trainer = Trainer(tiny_config("ff-bench", tmp_path, flip_all), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    low, high = data.pixel_low, data.pixel_high
    positives, negatives = views.inputs[: x.shape[0]], views.inputs[x.shape[0] :]
    assert torch.allclose(positives, overlay_labels(x.flip(-1), y, 10, low, high), atol=1e-5)
    wrong = negatives.flatten(1)[:, :10].argmax(1)
    assert (wrong != y).all()
    assert torch.allclose(negatives, overlay_labels(x.flip(-1), wrong, 10, low, high), atol=1e-5)


def test_label_strength_scales_the_lit_label_pixel_in_training_classification_and_the_readout(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-bench", tmp_path, "method.label_strength=3"), data)
    low, high = data.pixel_low, data.pixel_high
    lit = low + 3 * (high - low)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    labels = views.inputs.flatten(1)[:, :10]
    assert torch.allclose(labels.max(1).values, torch.full((labels.shape[0],), lit)) and torch.equal(labels.argmax(1)[: x.shape[0]], y)
    seen = []  # the label pixels of what layer 1 receives
    handle = trainer.net.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].flatten(1)[:, :10].clone()))
    trainer.method.goodness_per_label(trainer.net, x[:3])
    trainer.method.features(trainer.net, x[:3])
    handle.remove()
    assert torch.allclose(seen[0], overlay_every_label(x[:3], 10, low, lit).flatten(1)[:, :10])
    assert torch.allclose(seen[1], torch.full((3, 10), low + 0.1 * (lit - low)))


@pytest.mark.parametrize("activation", ["relu", "relu-fullgrad"])
def test_peer_normalisation_reaches_a_dead_unit_only_through_the_full_gradient_relu(activation):
    layer = DenseLayer(6, 4, activation)
    with torch.no_grad():
        layer[1].bias[0] = -100.0  # unit 0 is off for every input
    x = torch.randn(8, 6)
    out = layer(x)
    assert torch.equal(out, torch.relu(layer[1](layer[0](x))))  # the forward pass is a ReLU either way
    loss, _ = FFGoodnessLoss(4, peer_weight=1.0, peer_momentum=0.0)(out, Views(inputs=x, num_positive=4))
    loss.backward()
    dead_grad = layer[1].bias.grad[0]
    assert dead_grad < 0 if activation == "relu-fullgrad" else dead_grad == 0  # a descent step raises the dead unit


def test_dropout_zeroes_a_fraction_p_scales_the_rest_replays_from_its_state_and_is_off_in_eval():
    torch.manual_seed(0)
    drop = Dropout(0.25)
    x = torch.rand(200, 500) + 0.5
    first, second = drop(x), drop(x)
    assert not torch.equal(first, second)
    kept = first != 0
    assert float(kept.float().mean()) == pytest.approx(0.75, abs=0.01)
    torch.testing.assert_close(first[kept], x[kept] / 0.75)
    replay = Dropout(0.25)
    replay.load_state_dict(copy.deepcopy(drop.state_dict()))
    assert torch.equal(replay(x), drop(x))  # the stream is in the state dict: a resumed run drops the same units
    assert torch.equal(drop.eval()(x), x)


def test_dropout_keys_place_dropout_on_the_first_layer_input_and_on_the_later_ones(tmp_path):
    layers = build_backbone(tiny_config("ff-bench", tmp_path, "model.input_dropout=0.1", "model.dropout=0.3").model, (1, 28, 28))
    assert [[m.p for m in layer if isinstance(m, Dropout)] for layer in layers] == [[0.1], [0.3], [0.3]]
    with pytest.raises(UsageError, match="model.dropout and model.input_dropout apply to mlp, conv and locally-connected layers, not model.arch=vgg"):
        build_backbone(tiny_config("ff-bench", tmp_path, "model.arch=vgg", "model.channels=[4]", "model.dropout=0.3").model, (1, 28, 28))


def test_hard_negative_refresh_scores_the_net_without_dropout(tmp_path):
    """Each dropout stream advances once per training step: the refresh before the epoch runs in eval mode."""
    data = tiny_splits(tmp_path)
    calls = {}
    for negatives in ("uniform", "hard"):
        trainer = Trainer(tiny_config("ff-bench", tmp_path, f"method.negatives={negatives}", "model.dropout=0.5"), data)
        trainer.train_epoch()
        calls[negatives] = [int(m.stream[1]) for m in trainer.net.modules() if isinstance(m, Dropout)]
    assert calls["hard"] == calls["uniform"] and calls["uniform"][0] > 0, calls
