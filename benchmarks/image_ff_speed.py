"""Speed of locally connected and convolutional FF: locallearn's engine vs a minimal hand-written loop.

`lc`: `ff-unsupervised-local` (locally connected layers, hybrid negatives, softplus goodness loss).
`conv`: `ff-conv` (conv -> ReLU -> BatchNorm layers with max-pooling, random horizontal
flips, channel-wise competition loss).
The engine and the hand-written loop share the same layer weights and optimizers and
alternate epochs (`--repeats` rounds); the best of each is reported.

    python benchmarks/image_ff_speed.py lc --subset 5000
    python benchmarks/image_ff_speed.py conv --subset 2000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from epoch_timing import time_epochs
from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import load_dataset
from locallearn.engine import Trainer
from locallearn.views.hybrid import hybrid_images


def rms(h: torch.Tensor) -> torch.Tensor:
    return h * torch.rsqrt(h.square().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)


def hand_locally_connected(trainer: Trainer, generator: torch.Generator) -> None:
    ops = [next(m for m in block.layers[0].modules() if hasattr(m, "out_size")) for block in trainer.net.blocks]
    for x, _, _ in trainer.batcher.batches(0):
        h, b = torch.cat([x, hybrid_images(x, generator, 10)[0]]), x.shape[0]
        for op, optimizer in zip(ops, trainer.optimizers):
            windows = F.unfold(rms(h), op.kernel_size, stride=op.stride, padding=op.padding)
            z = torch.baddbmm(op.bias, windows.permute(2, 0, 1), op.weight).permute(1, 2, 0).reshape(h.shape[0], op.out_channels, *op.out_size).relu()
            g, threshold = z.flatten(1).square().sum(1), z[0].numel()
            loss = torch.cat([F.softplus(threshold - g[:b]), F.softplus(g[b:] - threshold)]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            h = z.detach()


def hand_conv(trainer: Trainer, generator: torch.Generator) -> None:
    layers = [block.layers[0] for block in trainer.net.blocks]
    convs = [next(m for m in layer.modules() if isinstance(m, torch.nn.Conv2d)) for layer in layers]
    norms = [next(m for m in layer.modules() if isinstance(m, torch.nn.BatchNorm2d)) for layer in layers]
    pools = [next((m.kernel_size for m in layer.modules() if isinstance(m, torch.nn.MaxPool2d)), 1) for layer in layers]
    classes, augment = trainer.data.num_classes, trainer.method.options.augment
    flip_probability = augment.flip if augment is not None else 0.0
    for x, y, _ in trainer.batcher.batches(0):
        flip = torch.rand(x.shape[0], generator=generator) < flip_probability
        h = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        for conv, norm, pool, optimizer in zip(convs, norms, pools, trainer.optimizers):
            if pool > 1:
                h = F.max_pool2d(h, pool)
            z = F.conv2d(h, conv.weight, conv.bias, conv.stride, conv.padding).relu()
            z = F.batch_norm(z, norm.running_mean, norm.running_var, norm.weight, norm.bias, True, norm.momentum, norm.eps)
            loss = F.cross_entropy(z.reshape(z.shape[0], classes, -1).square().mean(2), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            h = z.detach()


CASES = {"lc": ("ff-unsupervised-local", hand_locally_connected), "conv": ("ff-conv", hand_conv)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    preset, hand = CASES[args.case]
    config = load_config(preset, ["logging.progress=false", f"data.train_subset={args.subset}"])
    data = load_dataset(config.data.name, train_subset=args.subset)
    trainer = Trainer(config, data)
    times = time_epochs(trainer, lambda round_: hand(trainer, torch.Generator().manual_seed(round_)), args.repeats)
    best = {k: min(v) for k, v in times.items()}
    ratio = best["locallearn"] / best["hand-written"]
    print(f"{preset}, {args.subset} examples, {torch.get_num_threads()} threads: locallearn {best['locallearn']:.2f} s, "
          f"hand-written {best['hand-written']:.2f} s, ratio {ratio:.3f}")
    out = Path(__file__).parent / "results" / f"image_ff_speed_{args.case}.json"
    write_json_atomic(out, {"preset": preset, "examples": args.subset, "seconds": times, "ratio": ratio})


if __name__ == "__main__":
    main()
