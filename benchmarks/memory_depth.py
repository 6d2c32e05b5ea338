"""Activation memory against depth: local (one block per layer) vs end-to-end training of the same network.

The comparison is like for like: the same network of constant width, the same method and
the same objective, only `train.granularity` changes. By default the method is `backprop`
(preset `backprop-mlp`: a cross-entropy head on each block's output), so
`train.granularity=layer` is greedy layer-wise training (a head per layer, the graph cut
after every layer) and `train.granularity=end-to-end` is plain backprop (one head, on the
last layer). Both run through the engine (`Trainer.train_epoch`, i.e. `train_step`) on
random data.

Every (depth, granularity) point runs in a fresh process, which:

1. builds the network of `--depth` layers of `--width` units (MLP) or channels (3x3 conv,
   no pooling) and its per-block Adam optimizers;
2. trains one warm-up epoch of `--steps` steps, so that gradients and Adam's state exist:
   parameters, gradients and optimizer state grow with depth for both granularities and
   are not activations, so they are left out by taking the baseline after the warm-up;
3. trains a second epoch of `--steps` steps and reports its peak memory above that baseline: the
   activation memory (tensors saved for the backward pass, the step's input batch and views,
   and whatever temporaries the forward and backward passes need).

Measuring: on CUDA, `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`. On
CPU, the peak resident set size: writing "5" to /proc/self/clear_refs resets the kernel's
high-water mark (VmHWM) to the current RSS after the warm-up, and VmHWM is read after the
measured steps. The child runs with `MALLOC_MMAP_THRESHOLD_` fixed at 64 KiB so that glibc
serves every tensor from its own mmap and gives it back on free (with the default dynamic
threshold, freed tensors may stay resident and hide or blur the peak). Adam is switched to
its per-tensor implementation (`foreach=False`; CPU's default already) so that the
optimizer's temporaries are one parameter's size, not a whole block's.

As an allocator-free cross-check, the warm-up step also counts the bytes of the tensors
autograd saves for backward (`torch.autograd.graph.saved_tensors_hooks`, parameters
excluded, each storage once), per block: the largest block's total is what one backward
pass must keep alive.

    python benchmarks/memory_depth.py                 # MLP 256 wide, batch 8192, CPU: about 1-2 min
    python benchmarks/memory_depth.py --arch conv --width 32 --size 32 --batch 256
    python benchmarks/memory_depth.py --device cuda --width 1024 --batch 16384 --out /tmp/memory_depth.json
"""

from __future__ import annotations

import argparse
import weakref
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer

RESULTS = Path(__file__).parent / "results"


def proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} is not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset the kernel's peak RSS (VmHWM) of this process to its current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


class SavedBytes:
    """Counts the bytes autograd saves for backward, per block (parameters excluded, each storage once)."""

    def __init__(self, net):
        self.params = {p.untyped_storage().data_ptr() for p in net.parameters()}
        self.per_block: list[dict[int, int]] = []
        self.handles = [block.register_forward_pre_hook(self.new_block) for block in net.blocks]

    def new_block(self, module, args) -> None:
        self.per_block.append({})

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if self.per_block and storage.data_ptr() not in self.params:
            self.per_block[-1][storage.data_ptr()] = storage.nbytes()
        return tensor

    def close(self) -> list[float]:
        for handle in self.handles:
            handle.remove()
        return [sum(block.values()) / 2**20 for block in self.per_block]


class LiveSavedBytes:
    """The peak bytes of the tensors autograd holds for backward at one time (parameters excluded, each storage once).

    Unlike `SavedBytes`, which sums what each block saves, this follows the tensors' lives:
    a saved tensor counts until autograd lets go of it, so a step that holds two blocks'
    graphs at once (`train.overlap`) shows it.
    """

    def __init__(self, parameters):
        self.parameters = {p.untyped_storage().data_ptr() for p in parameters}
        self.holders: dict[int, int] = {}  # storage address -> saved tensors that share it
        self.live = self.peak = 0

    def pack(self, tensor: torch.Tensor):
        key = tensor.untyped_storage().data_ptr()
        if key in self.parameters:
            return tensor
        if not self.holders.get(key):
            self.live += tensor.untyped_storage().nbytes()
            self.peak = max(self.peak, self.live)
        self.holders[key] = self.holders.get(key, 0) + 1
        box = _Box(tensor)
        weakref.finalize(box, self._release, key, tensor.untyped_storage().nbytes())
        return box

    def _release(self, key: int, nbytes: int) -> None:
        self.holders[key] -= 1
        if not self.holders[key]:
            self.live -= nbytes

    @staticmethod
    def unpack(box):
        return box.tensor if isinstance(box, _Box) else box


class _Box:
    """A saved tensor; its finalizer tells `LiveSavedBytes` when autograd lets go of it."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def overrides_for(args: argparse.Namespace, depth: int, granularity: str) -> list[str]:
    model = [f"model.hidden={[args.width] * depth}"] if args.arch == "mlp" else [
        f"model.channels={[args.width] * depth}", "model.kernel_size=3", "model.padding=1", "model.stride=1", "model.pool=1"
    ]
    return [
        f"model.arch={args.arch}", *model, f"train.granularity={granularity}", f"data.batch_size={args.batch}",
        f"train.device={args.device}", "train.epochs=1", "optim.schedule=constant", "logging.progress=false",
    ]


def measure(args: argparse.Namespace, depth: int, granularity: str) -> dict:
    """Activation memory (MiB) of an epoch of `args.steps` steps after a warm-up epoch of as many, at `depth` and `granularity`."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = (args.channels, args.size, args.size)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch * args.steps, *shape, generator=generator)
    y = torch.randint(0, 10, (x.shape[0],), generator=generator)
    empty_x, empty_y = x[:0], y[:0]
    data = DataSplits(train_x=x, train_y=y, val_x=empty_x, val_y=empty_y, test_x=empty_x, test_y=empty_y, num_classes=10,
                      image_shape=shape, mean=0.0, std=1.0, pixel_low=-1.0, pixel_high=1.0).to(device)
    trainer = Trainer(load_config(args.preset, overrides_for(args, depth, granularity)), data, device)
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            group["foreach"] = False

    saved = SavedBytes(trainer.net)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
        trainer.train_epoch()  # the warm-up: gradients and Adam's state are made here
    saved_mb = saved.close()

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    else:
        reset_peak_rss()
        baseline = proc_status_mb("VmRSS")
    start = time.perf_counter()
    trainer.train_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = proc_status_mb("VmHWM")
    seconds = (time.perf_counter() - start) / args.steps
    state_mb = sum(p.numel() * p.element_size() for p in trainer.net.parameters()) / 2**20
    return {
        "depth": depth,
        "granularity": granularity,
        "blocks": len(trainer.net.blocks),
        "baseline_mb": baseline,
        "activation_mb": peak - baseline,
        "saved_for_backward_mb": max(saved_mb),
        "parameters_mb": state_mb,
        "seconds_per_step": seconds,
    }


def plot(rows: list[dict], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for granularity, colour in (("layer", "tab:blue"), ("end-to-end", "tab:red")):
        points = sorted((r["depth"], r["activation_mb"], r["saved_for_backward_mb"]) for r in rows if r["granularity"] == granularity)
        if not points:
            continue
        depths, measured, saved = zip(*points)
        label = "local (one block per layer)" if granularity == "layer" else "end-to-end"
        ax.plot(depths, measured, "o-", color=colour, label=f"{label}: peak above baseline")
        ax.plot(depths, saved, "x--", color=colour, alpha=0.6, label=f"{label}: saved for backward")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["depth"] for r in rows}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("depth (layers of the same width)")
    ax.set_ylabel("activation memory (MiB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="backprop-mlp", help="method and optimizer come from here; the model and the cut are overridden")
    parser.add_argument("--arch", default="mlp", choices=["mlp", "conv"])
    parser.add_argument("--width", type=int, default=256, help="units (mlp) or channels (conv) of every layer")
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--granularities", nargs="+", default=["layer", "end-to-end"])
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (mlp: 16x16x1 = 256 inputs = the width)")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2, help="steps per epoch: one epoch of warm-up, one measured")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "memory_depth.json", help="JSON results; the plot goes next to it (.png)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        depth, granularity = args.child.split(",", 1)
        print(json.dumps(measure(args, int(depth), granularity)))
        return

    settings = [f"--{key}={getattr(args, key)}" for key in ("preset", "arch", "width", "size", "channels", "batch", "steps", "device", "threads")]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows = []
    for depth in args.depths:
        for granularity in args.granularities:
            done = subprocess.run([sys.executable, __file__, *settings, f"--child={depth},{granularity}"], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"depth {depth}, {granularity}: the measuring process failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.splitlines()[-1]))
            print(f"  measured depth {depth:>3} {granularity:<11} {rows[-1]['activation_mb']:9.1f} MiB", file=sys.stderr, flush=True)

    unit = "units" if args.arch == "mlp" else "channels"
    title = f"{args.preset}, {args.arch} {args.width} {unit}, {args.channels}x{args.size}x{args.size} inputs, batch {args.batch}, {args.device}"
    print(title)
    print(f"{'depth':>5} {'granularity':<11} {'activation MiB':>14} {'saved-for-bw MiB':>16} {'params MiB':>10} {'s/step':>7}")
    for row in rows:
        print(f"{row['depth']:>5} {row['granularity']:<11} {row['activation_mb']:>14.1f} {row['saved_for_backward_mb']:>16.1f} {row['parameters_mb']:>10.1f} {row['seconds_per_step']:>7.2f}")
    summary = {}
    for granularity in args.granularities:
        curve = {r["depth"]: r["activation_mb"] for r in rows if r["granularity"] == granularity}
        low, high = min(curve), max(curve)
        summary[granularity] = {"ratio_deepest_over_shallowest": curve[high] / curve[low], "depths": [low, high]}
        print(f"{granularity}: depth {high} / depth {low} = {curve[high] / curve[low]:.2f}x")
    if "layer" in summary:
        summary["local_within_1.2x"] = summary["layer"]["ratio_deepest_over_shallowest"] <= 1.2
        print(f"local within 1.2x: {summary['local_within_1.2x']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"title": title, "settings": settings, "torch": torch.__version__, "rows": rows, "summary": summary}
    write_json_atomic(args.out, result)
    plot(rows, title, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
