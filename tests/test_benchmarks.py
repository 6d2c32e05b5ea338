"""The measuring helpers of benchmarks/ that the README's numbers rest on (small and CPU only).

- memory_depth.SavedBytes: what one backward pass must keep alive does not grow with depth
  when every layer is its own block, and grows in proportion to depth end to end.
- memory_depth.LiveSavedBytes: the activations held at one time; with `train.overlap` a step
  holds two blocks' graphs at once, so over twice one block's (a block's input now needs its
  gradient, so what the block does to it before its first weights is saved too), never the whole net's.
- overlap_cost's hand-written loop does the overlap step's math: the same weights after a step.
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


def live_saved_megabytes(*overrides: str) -> float:
    memory_depth = load_benchmark("memory_depth")
    config = load_config("backprop-mlp", ["model.hidden=[256,256,256,256,256,256]", "data.batch_size=64", "logging.progress=false", *overrides])
    trainer = Trainer(config, random_splits(64))
    counter = memory_depth.LiveSavedBytes(trainer.net.parameters())
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        trainer.train_epoch()
    assert counter.live == 0  # every saved tensor was let go of after the step
    return counter.peak / 2**20


def test_live_saved_activations_follow_how_many_blocks_a_step_holds():
    one_block = live_saved_megabytes("train.granularity=layer")
    overlap = live_saved_megabytes("train.granularity=layer", "train.overlap=true")
    end_to_end = live_saved_megabytes("train.granularity=end-to-end")
    assert 1.9 * one_block < overlap < 3 * one_block
    assert end_to_end > 2 * overlap


def test_the_hand_written_overlap_loop_is_the_overlap_steps_math():
    import copy

    from locallearn.engine import overlap_step

    overlap_cost = load_benchmark("overlap_cost")
    config = load_config("backprop-mlp", ["model.hidden=[32,32,32]", "data.batch_size=16", "optim.name=sgd", "optim.lr=0.1", "logging.progress=false"])
    engine = Trainer(config, random_splits(16))
    by_hand = copy.deepcopy(engine)
    x, y, index = next(iter(engine.batcher.batches(0)))
    views = engine.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    overlap_step(engine.net.blocks, engine.optimizers, views)
    overlap_cost.hand_written_overlap(by_hand.net.blocks, by_hand.optimizers, views)
    start = Trainer(config, random_splits(16)).net.state_dict()
    for name, value in engine.net.state_dict().items():
        torch.testing.assert_close(by_hand.net.state_dict()[name], value, msg=name)
        assert not torch.equal(value, start[name]) or "running" in name, f"{name} did not train"


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
