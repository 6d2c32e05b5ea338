"""benchmarks/ssl_speed.py's hand-written block-wise VICReg loop does the engine's math: same losses, same weights after a step."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer, train_step

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_ssl_speed():
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))  # as when the script runs: its sibling modules import by name
    spec = importlib.util.spec_from_file_location("benchmarks_ssl_speed", BENCHMARKS / "ssl_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def weighted(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))]


def test_the_hand_written_ssl_loop_is_the_engines_math():
    ssl_speed = load_ssl_speed()
    x = torch.rand(32, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    data = DataSplits(train_x=x, train_y=torch.zeros(32, dtype=torch.long), val_x=x[:0], val_y=torch.zeros(0, dtype=torch.long),
                      test_x=x[:0], test_y=torch.zeros(0, dtype=torch.long), num_classes=10, image_shape=(1, 12, 12),
                      mean=0.0, std=1.0, pixel_low=0.0, pixel_high=1.0)
    config = load_config("blockwise-vicreg", ["model.channels=[4,6,8]", "model.pool=[1,2,1]", "method.projector=[16,8]",
                                              "train.granularity=block:2", "logging.progress=false"])
    trainer = Trainer(config, data)
    hand = ssl_speed.hand_written_blocks(config.model.channels, config.model.pool, 2, [16, 8])
    for block, (layers, head) in zip(trainer.net.blocks, hand):
        for mine, theirs in zip(weighted(layers) + weighted(head), weighted(block), strict=True):
            mine.load_state_dict(theirs.state_dict())
    optimizers = [torch.optim.Adam([*b.parameters(), *h.parameters()], lr=config.optim.lr, weight_decay=config.optim.weight_decay) for b, h in hand]
    views = trainer.method.make_views(x, None, None, torch.Generator().manual_seed(1))
    before = hand[0][0][0][0].weight.detach().clone()  # the first convolution

    metrics, _ = train_step(trainer.net.blocks, trainer.optimizers, views)
    losses = ssl_speed.hand_written_step(hand, optimizers, views.inputs, views.num_positive)
    torch.testing.assert_close(torch.stack(losses), torch.stack([m["loss"] for m in metrics]))
    for block, (layers, head) in zip(trainer.net.blocks, hand):
        for mine, theirs in zip(weighted(layers) + weighted(head), weighted(block)):
            for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
                if not name.endswith("num_batches_tracked"):
                    torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(hand[0][0][0][0].weight, before), "the step changed nothing"
