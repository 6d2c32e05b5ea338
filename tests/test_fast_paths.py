"""The speed options (bf16 autocast, channels-last, torch.compile) train the same model, tested on the CPU."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_config, tiny_splits
from locallearn.engine import Trainer
from locallearn.evaluate import classify


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_splits(tmp_path_factory.mktemp("data"))


def trained(config, data, epochs: int = 1) -> Trainer:
    trainer = Trainer(config, data)
    for _ in range(epochs):
        trainer.train_epoch()
    return trainer


def test_bf16_autocast_learns_as_well_as_fp32_and_keeps_fp32_weights(tmp_path, data):
    results = {}
    for precision in ("fp32", "bf16"):
        trainer = trained(tiny_config("ff-supervised-small", tmp_path, f"train.precision={precision}", "optim.lr=0.01"), data, epochs=3)
        assert all(p.dtype == torch.float32 for p in trainer.net.parameters())
        results[precision] = classify(trainer.method, trainer.net, data.test_x, data.test_y, 200)[trainer.method.primary]
    assert results["fp32"] > 0.5
    assert results["bf16"] > results["fp32"] - 0.1, results


def test_channels_last_trains_the_same_conv_net(tmp_path, data):
    overrides = ["model.channels=[8,16]", "model.pool=[1,2]", "train.granularity=layer", "data.train_subset=200"]
    plain = trained(tiny_config("greedy-supervised", tmp_path, *overrides), data)
    last = trained(tiny_config("greedy-supervised", tmp_path, *overrides, "train.channels_last=true"), data)
    conv = next(m for m in last.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(plain.net.state_dict().items(), last.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_compiled_blocks_train_the_same_weights(tmp_path, data):
    overrides = ["model.hidden=[32,32]", "data.train_subset=200", "optim.schedule=constant"]
    eager = trained(tiny_config("backprop-mlp", tmp_path, *overrides), data)
    compiled = trained(tiny_config("backprop-mlp", tmp_path, *overrides, "train.compile=true"), data)
    assert list(eager.net.state_dict()) == list(compiled.net.state_dict())  # checkpoints stay loadable either way
    for (name, a), b in zip(eager.net.state_dict().items(), compiled.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
