"""Black boxes between layers: their definitions, no parameters and no gradient, the refusal inside a block, and FF learning through them."""

from __future__ import annotations

import pytest
import torch

from helpers import gradient_leaks, prototype_splits, tiny_config, tiny_splits
from locallearn.engine import Trainer
from locallearn.errors import UsageError
from locallearn.evaluate import classify
from locallearn.nn.blackbox import BlackBox

KINDS = ["sign", "quantize", "kwta"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(6, 12), (6, 12, 3, 3)])
def test_a_box_has_no_parameters_no_gradient_path_and_the_same_forward_in_training_and_evaluation(kind, shape):
    box = BlackBox(kind, width=12, levels=3, k=4, seed=0)
    x = torch.randn(shape, requires_grad=True)
    y = box(x)
    assert list(box.parameters()) == [] and not y.requires_grad and y.shape == x.shape
    box.eval()
    assert torch.equal(box(x), y)


def test_the_boxes_compute_what_their_docstring_says():
    x = torch.tensor([[-2.0, 0.0, 0.4, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert torch.equal(BlackBox("sign", 5)(x), torch.tensor([[-1.0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]))
    # 3 levels over [-2, 3]: -2, 0.5, 3; an example without range passes unchanged
    assert torch.equal(BlackBox("quantize", 5, levels=3)(x), torch.tensor([[-2.0, 0.5, 0.5, 0.5, 3.0], [1, 1, 1, 1, 1]]))
    box = BlackBox("kwta", 5, k=2, seed=3)
    shuffled = x[:1, box.permutation]
    expected = torch.where(shuffled >= shuffled.sort(dim=1, descending=True).values[:, 1:2], shuffled, 0.0)
    assert torch.equal(box(x[:1]), expected) and int(box(x[:1]).count_nonzero()) == 2
    assert not torch.equal(box.permutation, torch.arange(5))


def test_kwta_keeps_k_channels_at_every_position_and_its_permutation_is_fixed_by_the_seed():
    x = torch.randn(4, 8, 5, 5)
    y = BlackBox("kwta", 8, k=3, seed=7)(x)
    assert (y.count_nonzero(dim=1) == 3).all()
    assert torch.equal(BlackBox("kwta", 8, k=3, seed=7).permutation, BlackBox("kwta", 8, k=3, seed=7).permutation)
    with pytest.raises(UsageError, match="blackbox_k=9 must be between 1 and the 8 units"):
        BlackBox("kwta", 8, k=9)


def test_straight_through_passes_the_gradient_unchanged():
    x = torch.randn(3, 5, requires_grad=True)
    y = BlackBox("sign", 5, straight_through=True)(x)
    assert torch.equal(y, torch.sign(x))
    (y * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(5.0).expand(3, 5))


@pytest.fixture(scope="module")
def data():
    return prototype_splits(n_train=1000, n_test=10)


@pytest.mark.parametrize("granularity", ["end-to-end", "block:2"])
def test_a_box_inside_a_block_is_refused_unless_straight_through(tmp_path, data, granularity):
    with pytest.raises(UsageError, match=f"model.blackbox=sign has no gradient, and train.granularity={granularity} puts boxes inside a block"):
        Trainer(tiny_config("backprop-mlp", tmp_path, "model.blackbox=sign", f"train.granularity={granularity}"), data)
    trainer = Trainer(tiny_config("backprop-mlp", tmp_path, "model.blackbox=sign", f"train.granularity={granularity}",
                                  "model.blackbox_grad=straight-through"), data)
    first = next(trainer.net.blocks[0].layers[0].parameters())
    x, y, index = next(iter(trainer.batcher.batches(0)))
    block = trainer.net.blocks[0]
    _, loss, _ = block(x, trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0)))
    loss.backward()
    assert first.grad is not None and first.grad.abs().sum() > 0  # the first layer learns through the boxes after it


@pytest.mark.parametrize("preset, kind", [("ff-bench", "sign"), ("ff-unsupervised-small", "quantize"), ("blockwise-barlow", "kwta")])
def test_ff_and_blockwise_ssl_train_through_boxes_and_stay_local(tmp_path, data, one_thread, preset, kind):
    """One box per block boundary: each block's loss stays in its block, and every block's parameters move."""
    config = tiny_config(preset, tmp_path, "train.granularity=layer", "data.batch_size=16", f"model.blackbox={kind}", "model.blackbox_k=8")
    trainer = Trainer(config, data)
    assert isinstance(trainer.net.blocks[1].layers[0][0], BlackBox)
    before = [[p.detach().clone() for p in block.parameters()] for block in trainer.net.blocks]
    x, y, index = next(iter(trainer.batcher.batches(0)))
    assert gradient_leaks(trainer, trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))) == []
    for block, old in zip(trainer.net.blocks, before):
        assert any(not torch.equal(p, q) for p, q in zip(block.parameters(), old)), block.name


def test_supervised_ff_learns_through_sign_boxes(tmp_path, one_thread):
    """Two FF layers with binary spikes between them: the whole net and layer 2, which sees only the spikes, classify far above chance (10%)."""
    data = tiny_splits(tmp_path)
    config = tiny_config("ff-bench", tmp_path, "model.blackbox=sign", "model.hidden=[64,64]", "train.epochs=4", "optim.lr=0.01", "method.skip_first=false")
    trainer = Trainer(config, data)
    assert isinstance(trainer.net.blocks[1].layers[0][0], BlackBox)
    for _ in range(4):
        trainer.train_epoch()
    accuracy = classify(trainer.method, trainer.net, data.val_x, data.val_y, 200)
    assert accuracy["goodness"] >= 0.8 and accuracy["layer2"] >= 0.3, accuracy
