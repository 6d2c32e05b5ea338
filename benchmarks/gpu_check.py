"""One short check of a machine: matrix-multiply peak, speed and memory per method, and correctness.

`benchmarks/gpu_check.sh` runs this (and sets up Python first); run it directly as
`python benchmarks/gpu_check.py [--device cuda|cpu]`. On an NVIDIA GPU the whole check is
sized for under 8 minutes on one H200-class card; without one it takes its CPU fallback:
the same code path with a few steps per part, under 2 minutes on 2 CPU cores.

Parts, each written into the JSON file as soon as it is done (so a run cut short still
leaves what it measured), and each skipped with a reason when the time budget runs out:

1. `matmul`: the matrix-multiply peak of this device, measured here: on CUDA 8192x8192
   products in bf16, in fp32 with TF32 off and in TF32, timed with CUDA events; on CPU a
   2048x2048 fp32 product.
2. `speed`: for each method family (`ff-bench`, `ff-conv`, `blockwise-barlow`,
   `e2e-barlow`, `backprop-mlp`, and on GPU a wide `ff-bench` of 3x4096 units at batch
   16384 that is big enough to be bound by the matrix multiplies) a fixed number of
   training steps through `Trainer` on random images of the preset's shape that live on
   the device: one epoch of `steps` steps to warm up, then one timed epoch of `steps`
   steps. Reported: images/s (input images; FF also runs a negative per image and SSL two
   views), the FLOPs of one step counted by `torch.utils.flop_counter.FlopCounterMode`
   (forward and backward, eager, on one step of an identical trainer), the achieved
   TFLOP/s, that as a fraction of the matmul peak of the precision the layers really ran
   in (seen from the dtype of the first linear/conv output under the engine, so a
   `train.precision=bf16` that the engine ignores shows up as fp32), and the peak memory
   of the timed epoch (`torch.cuda.max_memory_allocated`: data, weights, optimizer state and
   activations; on CPU the peak RSS of the whole process). On GPU the runs ask for `train.precision=bf16`, and conv nets for
   `train.channels_last=true`; `--compile` adds `train.compile=true`. The CPU fallback runs
   every workload at batch 32 (`--cpu-batch`), 2 + 2 steps: its numbers only show the path works.
3. `memory_depth`: `benchmarks/memory_depth.py` (activation memory at depths 4..32, local
   vs end to end) on CUDA at width 1024, batch 16384; on CPU a small version (depths 4 and
   8). Its JSON and plot go next to this check's JSON as `<name>-memory_depth.json`/`.png`.
4. `correctness`: (a) equivalence: a small backprop MLP trained 5 steps through the
   engine on this device and on the CPU (fp32, TF32 off) must end with the same weights
   (on CPU: two runs must be bit-identical), layer-wise and end to end; (b) a real run,
   `locallearn train ff-supervised-small` on Fashion-MNIST if its files are on this machine:
   the whole preset (10 epochs) on GPU, test accuracy must be >= 0.80; on CPU one epoch on
   a 5,000-image subset (50 steps), accuracy >= 0.35 against 0.10 by chance (FF reaches
   about 0.47 there: this only shows that the path learns).

The exit status is 1 if a correctness check failed, else 0 (skipped parts do not fail).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import DataSplits
from locallearn.engine import Trainer
from locallearn.nn.backbones import BUILDERS, mlp_layers

HERE = Path(__file__).resolve().parent
CONV_ARCHS = tuple(name for name, build in BUILDERS.items() if build is not mlp_layers)  # image layers: channels_last on CUDA


@dataclass
class Workload:
    name: str
    preset: str
    overrides: list[str] = field(default_factory=list)
    gpu_only: bool = False


WORKLOADS = [
    Workload("ff-bench", "ff-bench"),
    Workload("ff-bench-wide", "ff-bench", ["model.hidden=[4096,4096,4096]", "data.batch_size=16384"], gpu_only=True),
    Workload("ff-conv", "ff-conv"),
    Workload("blockwise-barlow", "blockwise-barlow"),
    Workload("e2e-barlow", "e2e-barlow"),
    Workload("backprop-mlp", "backprop-mlp"),
]


class Clock:
    """The time budget of the whole check."""

    def __init__(self, budget_s: float):
        self.start, self.budget = time.perf_counter(), budget_s

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of a stretch of work: CUDA's allocator statistics, or on Linux the process's peak RSS (reset through clear_refs)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self.baseline = proc_status_mb("VmRSS") or 0.0
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak = proc_status_mb("VmHWM") or 0.0
        return False


# ----------------------------------------------------------------------------- matmul peak

def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int, tf32: bool = False) -> float:
    """TFLOP/s of `size`-square matrix products in `dtype`, after 3 untimed ones."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        c = torch.empty(size, size, device=device, dtype=dtype)
        for _ in range(3):
            torch.mm(a, b, out=c)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeats):
                torch.mm(a, b, out=c)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, b, out=c)
            seconds = time.perf_counter() - t0
        return 2 * size**3 * repeats / seconds / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def measure_matmul(device: torch.device) -> dict:
    if device.type == "cuda":
        return {
            "size": 8192,
            "bf16_tflops": matmul_tflops(device, torch.bfloat16, 8192, 20),
            "fp32_tflops": matmul_tflops(device, torch.float32, 8192, 5, tf32=False),
            "tf32_tflops": matmul_tflops(device, torch.float32, 8192, 10, tf32=True),
        }
    return {"size": 2048, "fp32_tflops": matmul_tflops(device, torch.float32, 2048, 5)}


# ----------------------------------------------------------------------------- speed

def random_data(shape: tuple[int, int, int], n: int, device: torch.device, seed: int = 0) -> DataSplits:
    """`n` random images of `shape` and random labels, made on `device` (no validation or test split)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, *shape, device=device, generator=generator)
    y = torch.randint(0, 10, (n,), device=device, generator=generator)
    empty_x, empty_y = x[:0], y[:0]
    return DataSplits(train_x=x, train_y=y, val_x=empty_x, val_y=empty_y, test_x=empty_x, test_y=empty_y, num_classes=10,
                      image_shape=shape, mean=0.0, std=1.0, pixel_low=-1.0, pixel_high=1.0)


def workload_config(work: Workload, device: torch.device, args: argparse.Namespace):
    base = load_config(work.preset, work.overrides)
    overrides = list(work.overrides) + [f"train.device={device.type}", "train.epochs=2", "logging.progress=false"]
    overrides.append(f"train.precision={args.precision}")
    if base.model.arch in CONV_ARCHS and device.type == "cuda":
        overrides.append("train.channels_last=true")
    if args.compile:
        overrides.append("train.compile=true")
    if device.type == "cpu":  # the fallback only has to run the path: small batches
        overrides += [f"train.threads={args.threads}", f"data.batch_size={args.cpu_batch}"]
    return load_config(work.preset, overrides), overrides


def compute_dtypes(net: nn.Module) -> tuple[set, list]:
    """Forward hooks that record the output dtype of every linear and conv layer of `net`."""
    seen: set = set()
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.add(str(out.dtype).replace("torch.", "")))
             for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return seen, hooks


def step_flops(config, shape, device: torch.device) -> tuple[int, list[str]]:
    """FLOPs (forward + backward) of one training step of `config`, counted eagerly; and the dtypes its layers ran in."""
    eager = config.model_copy(deep=True)
    if "compile" in type(eager.train).model_fields:
        eager.train.compile = False
    trainer = Trainer(eager, random_data(shape, eager.data.batch_size, device, seed=1), device)
    seen, hooks = compute_dtypes(trainer.net)
    with FlopCounterMode(display=False) as counter:
        trainer.train_epoch()
    for hook in hooks:
        hook.remove()
    return counter.get_total_flops(), sorted(seen)


def run_workload(work: Workload, device: torch.device, args: argparse.Namespace, peaks: dict) -> dict:
    config, overrides = workload_config(work, device, args)
    shape = (1, 28, 28)  # the presets' Fashion-MNIST shape
    batch = config.data.batch_size
    data = random_data(shape, batch * args.steps, device)
    trainer = Trainer(config, data, device)
    sync(device)
    t0 = time.perf_counter()
    trainer.train_epoch()
    sync(device)
    warmup_s = time.perf_counter() - t0
    with PeakMemory(device) as memory:
        t0 = time.perf_counter()
        trainer.train_epoch()
        sync(device)
        seconds = time.perf_counter() - t0
    del trainer, data
    gc.collect()
    flops, dtypes = step_flops(config, shape, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    achieved = flops * args.steps / seconds / 1e12
    if "bfloat16" in dtypes and "bf16_tflops" in peaks:
        peak_name = "bf16_tflops"
    elif device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        peak_name = "tf32_tflops"
    else:
        peak_name = "fp32_tflops"
    return {
        "workload": work.name, "preset": work.preset, "overrides": overrides, "batch": batch, "steps": args.steps,
        "granularity": config.train.granularity, "warmup_seconds": warmup_s, "seconds": seconds,
        "ms_per_step": 1e3 * seconds / args.steps, "images_per_second": batch * args.steps / seconds,
        "step_gflop": flops / 1e9, "achieved_tflops": achieved, "layer_dtypes": dtypes,
        "peak_compared_with": peak_name, "fraction_of_matmul_peak": achieved / peaks[peak_name],
        "peak_memory_mb": memory.peak,
        "memory_measure": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the whole process (data, weights and all)",
    }


# ----------------------------------------------------------------------------- correctness

def train_small(device: torch.device, granularity: str, steps: int = 5) -> list[torch.Tensor]:
    """Weights after `steps` steps of a small backprop MLP on fixed random data (fp32, no random views)."""
    overrides = ["model.hidden=[64,64,64]", "data.batch_size=32", f"train.granularity={granularity}", "train.epochs=1",
                 f"train.device={device.type}", "train.precision=fp32", "logging.progress=false", "optim.lr=0.001", "optim.schedule=constant"]
    data = random_data((1, 28, 28), 32 * steps, torch.device("cpu"), seed=3).to(device)
    trainer = Trainer(load_config("backprop-mlp", overrides), data, device)
    trainer.train_epoch()
    return [p.detach().cpu() for p in trainer.net.parameters()]


def equivalence(device: torch.device) -> dict:
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        result = {"against": "cpu" if device.type == "cuda" else "a second cpu run (determinism)"}
        for granularity in ("layer", "end-to-end"):
            here, reference = train_small(device, granularity), train_small(torch.device("cpu"), granularity)
            diff = max(float((a - b).abs().max()) for a, b in zip(here, reference))
            tolerance = 1e-4 if device.type == "cuda" else 0.0
            result[granularity] = {"max_abs_weight_diff": diff, "tolerance": tolerance, "ok": diff <= tolerance}
        result["ok"] = all(result[g]["ok"] for g in ("layer", "end-to-end"))
        return result
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def real_run(device: torch.device, args: argparse.Namespace, timeout_s: float) -> dict:
    from locallearn.data.locate import find_dataset
    from locallearn.errors import DataError

    try:
        folder = find_dataset("fashion-mnist", args.data_dir, download=False)
    except DataError as err:
        return {"skipped": f"Fashion-MNIST is not on this machine ({err})"}
    if device.type == "cuda":
        overrides, threshold = [f"train.device={device.type}"], 0.80
    else:
        overrides, threshold = ["train.device=cpu", "train.epochs=1", "data.train_subset=5000", "eval.probes=false", f"train.threads={args.threads}"], 0.35
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "locallearn.cli", "train", "ff-supervised-small", "--out", f"{tmp}/run", "--quiet",
                   "--data-dir", str(folder), "data.download=false", *overrides]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout_s, 1))
        except subprocess.TimeoutExpired:
            # Out of time is not a wrong answer: reported, but it does not fail the check.
            return {"command": "locallearn " + " ".join(command[3:]).replace(tmp, "TMP"), "ok": None, "error": f"timed out after {timeout_s:.0f} s"}
        result = {"command": "locallearn " + " ".join(command[3:]).replace(tmp, "TMP"), "seconds": time.perf_counter() - t0, "threshold": threshold}
        if done.returncode != 0:
            return {**result, "ok": False, "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
        summary = json.loads(Path(tmp, "run", "summary.json").read_text())
    accuracy = summary["test_accuracy"]
    return {**result, "test_accuracy": accuracy, "val_accuracy": summary.get("val_accuracy"),
            "train_seconds": summary.get("train_seconds"), "device": summary.get("device"), "ok": accuracy >= threshold}


# ----------------------------------------------------------------------------- memory by depth

def memory_depth(device: torch.device, check_out: Path, timeout_s: float) -> dict:
    out = check_out.with_name(f"{check_out.stem}-memory_depth.json")  # next to the check's JSON, never over memory_depth.py's own results
    if device.type == "cuda":
        settings = ["--device=cuda", "--width=1024", "--batch=16384", "--size=32", "--steps=3"]
    else:
        settings = ["--device=cpu", "--width=256", "--batch=512", "--depths", "4", "8"]
    command = [sys.executable, str(HERE / "memory_depth.py"), *settings, f"--out={out}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(timeout_s, 1))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    if done.returncode != 0:
        return {"ok": False, "error": done.stderr.strip().splitlines()[-3:]}
    print(done.stdout, end="", flush=True)
    result = json.loads(out.read_text())
    return {"command": "python benchmarks/memory_depth.py " + " ".join(settings), "file": str(out),
            "rows": [{k: r[k] for k in ("depth", "granularity", "activation_mb", "saved_for_backward_mb")} for r in result["rows"]],
            "summary": result["summary"]}


# ----------------------------------------------------------------------------- main

def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device), "host": platform.node(),
           "cpu_threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                   multiprocessors=props.multi_processor_count, cuda=torch.version.cuda,
                   allow_tf32_matmul=torch.backends.cuda.matmul.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)
    return env


def print_speed_table(rows: list[dict]) -> None:
    print(f"{'workload':<17} {'batch':>6} {'ms/step':>8} {'images/s':>10} {'GFLOP/step':>10} {'TFLOP/s':>8} {'of peak':>8} {'dtype':>9} {'peak MiB':>9}")
    for r in rows:
        if "skipped" in r or "error" in r:
            print(f"{r['workload']:<17} {r.get('skipped') or r.get('error')}")
            continue
        print(f"{r['workload']:<17} {r['batch']:>6} {r['ms_per_step']:>8.2f} {r['images_per_second']:>10.0f} {r['step_gflop']:>10.2f} "
              f"{r['achieved_tflops']:>8.3f} {r['fraction_of_matmul_peak']:>8.1%} {','.join(r['layer_dtypes']):>9} {r['peak_memory_mb']:>9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    parser.add_argument("--out", type=Path, help="JSON results (default: $OUT/gpu_check.json if OUT is set, else benchmarks/results/gpu_check.json, or gpu_check-cpu.json for the CPU fallback)")
    parser.add_argument("--steps", type=int, help="timed steps per workload (and as many to warm up); default 100 on GPU, 2 on CPU")
    parser.add_argument("--budget", type=float, help="seconds for the whole check; parts that would not fit are skipped (default 440 GPU, 100 CPU)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="train.precision of the speed runs (default bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="also pass train.compile=true")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU fallback; 1: on a shared machine 2 threads can be many times slower)")
    parser.add_argument("--cpu-batch", type=int, default=32, help="batch size of every speed workload in the CPU fallback")
    parser.add_argument("--data-dir", help="where Fashion-MNIST is, for the real-data run (else the usual lookup, no download)")
    parser.add_argument("--only", nargs="+", help="run only these workloads")
    parser.add_argument("--skip", nargs="+", default=[], choices=["matmul", "speed", "memory_depth", "correctness"])
    args = parser.parse_args()

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    args.steps = args.steps or (100 if gpu else 2)
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    clock = Clock(args.budget or (440 if gpu else 100))
    if args.out is None:
        name = "gpu_check.json" if gpu else "gpu_check-cpu.json"
        args.out = Path(os.environ["OUT"]) / name if os.environ.get("OUT") else HERE / "results" / name
    args.out.parent.mkdir(parents=True, exist_ok=True)

    result: dict = {"mode": "gpu" if gpu else "cpu-fallback", "environment": environment(device), "settings": vars(args) | {"out": str(args.out)}}
    save = lambda: write_json_atomic(args.out, result)  # noqa: E731
    print(f"gpu_check: {result['mode']} on {result['environment'].get('gpu', platform.processor() or 'cpu')}, torch {torch.__version__}, budget {clock.budget:.0f} s", flush=True)

    peaks = {}
    if "matmul" not in args.skip:
        peaks = measure_matmul(device)
        result["matmul"] = peaks
        save()
        print("matmul peak: " + ", ".join(f"{k.replace('_tflops', '')} {v:.3f} TFLOP/s" for k, v in peaks.items() if k.endswith("tflops")), flush=True)

    # The correctness checks are cheap and matter most: they run before the long parts are given the rest.
    failed = False
    if "correctness" not in args.skip:
        check = {"equivalence": equivalence(device)}
        result["correctness"] = check
        save()
        print(f"equivalence ({check['equivalence']['against']}): " + ", ".join(
            f"{g} max |dw| {check['equivalence'][g]['max_abs_weight_diff']:.2e}" for g in ("layer", "end-to-end")) + (" ok" if check["equivalence"]["ok"] else " FAILED"), flush=True)
        check["real_data"] = real_run(device, args, min(clock.left() - 30, 180 if gpu else 60))
        save()
        real = check["real_data"]
        if "skipped" in real:
            print(f"real-data run: skipped: {real['skipped']}", flush=True)
        elif "error" in real:
            print(f"real-data run {'FAILED' if real['ok'] is False else 'incomplete'}: {real.get('command')}: {real['error']}", flush=True)
        else:
            print(f"real-data run: {real['command']}: test accuracy {real['test_accuracy']:.4f} (>= {real['threshold']}: {'ok' if real['ok'] else 'FAILED'})", flush=True)
        failed = not check["equivalence"]["ok"] or real.get("ok") is False

    if "speed" not in args.skip:
        if not peaks:
            peaks = measure_matmul(device)
        rows = []
        result["speed"] = rows
        reserve = 90 if gpu else 10  # kept for memory_depth
        for work in WORKLOADS:
            if (work.gpu_only and not gpu) or (args.only and work.name not in args.only):
                continue
            if clock.left() < reserve + (20 if gpu else 15):
                rows.append({"workload": work.name, "skipped": f"time budget ({clock.left():.0f} s left)"})
                continue
            try:
                rows.append(run_workload(work, device, args, peaks))
            except Exception as err:  # one broken workload must not hide the others' numbers
                rows.append({"workload": work.name, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]})
            save()
            print(f"  {work.name}: " + (f"{rows[-1]['images_per_second']:.0f} images/s, {rows[-1]['achieved_tflops']:.3f} TFLOP/s"
                                       if "error" not in rows[-1] else rows[-1]["error"]), flush=True)
        save()

    if "memory_depth" not in args.skip:
        if clock.left() > (60 if gpu else 25):
            result["memory_depth"] = memory_depth(device, args.out, clock.left() - 5)
        else:
            result["memory_depth"] = {"skipped": f"time budget ({clock.left():.0f} s left)"}
        save()

    result["seconds"] = clock.budget - clock.left()
    result["ok"] = not failed
    save()
    print()
    if "matmul" in result:
        print("matmul peak (TFLOP/s): " + ", ".join(f"{k.replace('_tflops', '')} {v:.3f}" for k, v in result["matmul"].items() if k.endswith("tflops")))
    if "speed" in result:
        print_speed_table(result["speed"])
    md = result.get("memory_depth", {})
    if "summary" in md:
        print("activation memory, deepest / shallowest: " + ", ".join(
            f"{g} {s['ratio_deepest_over_shallowest']:.2f}x" for g, s in md["summary"].items() if isinstance(s, dict)))
    print(f"correctness: {'ok' if not failed else 'FAILED'}; {result['seconds']:.0f} s in all; results in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
