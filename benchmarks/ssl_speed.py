"""Speed of one block-wise SSL epoch (`blockwise-vicreg`): locallearn's engine vs a minimal hand-written PyTorch loop.

Both do the same math on the same data in the same process: two augmented views per image
(the library's batched `two_views` in both: the augmentations are measured, not re-implemented),
the preset's VGG cut into its blocks, each block's global-average-pool + projector head and
VICReg loss, Adam per block, the graph cut between blocks. The hand-written loop leaves out
what the engine adds around the math: the cosine schedule, per-block metrics (VICReg's terms,
embedding spread), the divergence check and the per-step random streams that make resume exact.
The two are timed alternately (`--repeats` rounds) and the best of each is kept; the share of
the step spent making the views is timed alone over the same batches.

    python benchmarks/ssl_speed.py --subset 2000            # quick look (a few minutes on 1 thread)
    python benchmarks/ssl_speed.py --subset 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from epoch_timing import time_epochs
from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import load_dataset
from locallearn.engine import Trainer
from locallearn.views.augment import two_views


def hand_written_blocks(channels: list[int], pools: list[int], k: int, projector: list[int]) -> list[tuple[nn.Module, nn.Module]]:
    """(block, head) pairs: the VGG's `[max-pool] conv-BN-ReLU` layers in `k` consecutive groups, each head pool + MLP."""
    layers, c_in = [], 1
    for c_out, pool in zip(channels, pools):
        layers.append(nn.Sequential(*([nn.MaxPool2d(pool)] if pool > 1 else []), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
                                    nn.BatchNorm2d(c_out), nn.ReLU()))
        c_in = c_out
    bounds = [round(i * len(layers) / k) for i in range(k + 1)]  # as the library groups them
    blocks = []
    for a, b in zip(bounds, bounds[1:]):
        group = layers[a:b]
        width, mlp = group[-1][-2].num_features, []
        for j, out in enumerate(projector):
            mlp.append(nn.Linear(width, out, bias=False))
            if j < len(projector) - 1:
                mlp += [nn.BatchNorm1d(out), nn.ReLU()]
            width = out
        blocks.append((nn.Sequential(*group), nn.Sequential(*mlp)))
    return blocks


def vicreg(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """25 * invariance + 25 * variance + 1 * covariance (Bardes et al. 2022)."""
    loss = 25 * F.mse_loss(z1, z2)
    d = z1.shape[1]
    for z in (z1, z2):
        z = z - z.mean(0)
        loss = loss + 25 * F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean() / 2
        cov = z.T @ z / (z.shape[0] - 1)
        loss = loss + (cov.square().sum() - cov.diagonal().square().sum()) / d
    return loss


def hand_written_step(blocks, optimizers, h: torch.Tensor, n: int) -> list[torch.Tensor]:
    """One step on `h` = [view 1; view 2] (`n` images each): every block's loss, backward and update; the graph cut between blocks."""
    losses = []
    for (block, head), optimizer in zip(blocks, optimizers):
        out = block(h)
        z = head(out.mean(dim=(2, 3)))
        loss = vicreg(z[:n], z[n:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        h = out.detach()
    return losses


def hand_written_epoch(blocks, optimizers, x_all, options, low, high, batch_size, generator) -> None:
    """The reference: block-wise VICReg written out by hand (views from the library's `two_views`)."""
    order = torch.randperm(x_all.shape[0], generator=generator)
    for start in range(0, len(order), batch_size):
        v1, v2 = two_views(x_all[order[start:start + batch_size]], options, low, high, generator)
        hand_written_step(blocks, optimizers, torch.cat([v1, v2]), v1.shape[0])


def views_seconds(x_all, options, low, high, batch_size, generator) -> float:
    """Seconds to make every batch's two views in one epoch, alone."""
    start = time.perf_counter()
    for begin in range(0, x_all.shape[0], batch_size):
        two_views(x_all[begin:begin + batch_size], options, low, high, generator)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=2000, help="train on the first N examples (default 2000)")
    parser.add_argument("--granularity", default="block:4", help="train.granularity: where the VGG is cut (default block:4)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ssl_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config("blockwise-vicreg", [f"data.train_subset={args.subset}", f"train.granularity={args.granularity}", "logging.progress=false"])
    data = load_dataset(config.data.name, train_subset=config.data.train_subset, val_size=config.data.val_size)
    trainer = Trainer(config, data)
    k = len(trainer.net.blocks)
    options, batch = trainer.method.options.augment, config.data.batch_size
    torch.manual_seed(0)
    blocks = hand_written_blocks(config.model.channels, config.model.pool, k, trainer.method.options.projector)
    optimizers = [torch.optim.Adam([*b.parameters(), *h.parameters()], lr=config.optim.lr, weight_decay=config.optim.weight_decay) for b, h in blocks]
    generator = torch.Generator().manual_seed(0)
    for block, head in blocks:
        block.train(), head.train()

    times = time_epochs(trainer, lambda _: hand_written_epoch(blocks, optimizers, data.train_x, options, data.pixel_low, data.pixel_high,
                                                              batch, generator), args.repeats)
    views = min(views_seconds(data.train_x, options, data.pixel_low, data.pixel_high, batch, generator) for _ in range(args.repeats))
    best = {name: min(seconds) for name, seconds in times.items()}
    result = {
        "preset": "blockwise-vicreg",
        "granularity": args.granularity,
        "blocks": k,
        "examples": data.train_x.shape[0],
        "batch_size": batch,
        "threads": torch.get_num_threads(),
        "seconds": times,
        "best_seconds": best,
        "ratio_locallearn_over_hand": best["locallearn"] / best["hand-written"],
        "views_seconds": views,
        "views_share_of_locallearn_epoch": views / best["locallearn"],
        "note": "measured on a shared machine (other jobs running): absolute seconds are load-dependent; the two loops alternate, so the ratio is the comparable number",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"blockwise-vicreg epoch, {k} blocks, {result['examples']} examples, batch {batch}, {result['threads']} thread(s)")
    for name, seconds in best.items():
        print(f"  {name:13s} {seconds:7.2f} s")
    print(f"  ratio locallearn / hand-written = {result['ratio_locallearn_over_hand']:.3f}")
    print(f"  making the two views: {views:.2f} s = {100 * result['views_share_of_locallearn_epoch']:.0f}% of the locallearn epoch")


if __name__ == "__main__":
    main()
