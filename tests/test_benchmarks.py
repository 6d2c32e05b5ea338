"""The measuring helpers of benchmarks/ that the README's numbers rest on (small and CPU only).

- memory_depth.SavedBytes: what one backward pass must keep alive does not grow with depth
  when every layer is its own block, and grows in proportion to depth end to end.
- gpu_check.step_flops and ff_speed.epoch_flops agree on the FLOPs of an FF step: forward
  plus the weight gradient only, since every FF layer's input is detached.
- image_ff_speed's hand-written conv FF loop does the engine's math: the same weights after
  an epoch from the same start (without flips, whose coins the two draw differently).
- epoch_timing alternates an engine epoch (from epoch 0) and a hand-written one, each timed on its own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))  # as when a script runs: its sibling modules import by name
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def random_splits(n: int, shape=(1, 8, 8)) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return DataSplits(train_x=x, train_y=y, val_x=x[:0], val_y=y[:0], test_x=x[:0], test_y=y[:0], num_classes=10,
                      image_shape=shape, mean=0.0, std=1.0, pixel_low=-1.0, pixel_high=1.0)


def test_the_hand_written_conv_loop_is_the_engines_math():
    image_ff_speed = load_benchmark("image_ff_speed")
    overrides = ["model.channels=[10,20]", "model.pool=[1,2]", "method.augment=null", "data.batch_size=16", "logging.progress=false"]
    start, engine, hand = (Trainer(load_config("ff-conv", overrides), random_splits(64)) for _ in range(3))
    engine.train_epoch()
    image_ff_speed.hand_conv(hand, torch.Generator().manual_seed(0))
    trained, by_hand = engine.net.state_dict(), hand.net.state_dict()
    compared = [name for name in trained if not name.endswith("num_batches_tracked")]  # F.batch_norm does not count
    assert any(name.endswith("running_var") for name in compared)
    for name in compared:
        torch.testing.assert_close(by_hand[name], trained[name], msg=name)
        assert not torch.equal(trained[name], start.net.state_dict()[name]), f"{name} did not train"


@pytest.mark.parametrize("granularity", ["layer", "end-to-end"])
def test_saved_for_backward_by_depth(granularity):
    memory_depth = load_benchmark("memory_depth")
    saved = {}
    for depth in (2, 6):
        overrides = [f"model.hidden={[64] * depth}", f"train.granularity={granularity}", "data.batch_size=32", "logging.progress=false"]
        trainer = Trainer(load_config("backprop-mlp", overrides), random_splits(32))
        counter = memory_depth.SavedBytes(trainer.net)
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
            trainer.train_epoch()
        per_block = counter.close()
        assert len(per_block) == len(trainer.net.blocks)
        saved[depth] = max(per_block)
    if granularity == "layer":
        assert saved[6] == pytest.approx(saved[2], rel=0.05)
    else:
        assert saved[6] > 2.5 * saved[2]


def test_ff_step_flops_match_the_formula():
    gpu_check, ff_speed = load_benchmark("gpu_check"), load_benchmark("ff_speed")
    batch, hidden = 16, [32, 32, 32]
    config = load_config("ff-bench", [f"model.hidden={hidden}", f"data.batch_size={batch}", "logging.progress=false"])
    flops, dtypes = gpu_check.step_flops(config, (1, 8, 8), torch.device("cpu"))
    assert dtypes == ["float32"]
    assert flops == ff_speed.epoch_flops(batch, [64, *hidden])


def test_epoch_timing_alternates_the_engine_and_the_hand_written_epoch():
    epoch_timing = load_benchmark("epoch_timing")
    calls = []

    class Engine:
        epoch = 3

        def train_epoch(self):
            calls.append(("engine", self.epoch))

    times = epoch_timing.time_epochs(Engine(), lambda round_: calls.append(("hand", round_)), repeats=2)
    assert calls == [("engine", 0), ("hand", 0), ("engine", 0), ("hand", 1)]
    assert {k: len(v) for k, v in times.items()} == {"locallearn": 2, "hand-written": 2}
