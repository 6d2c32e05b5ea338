"""How many of each layer's units ever fire in a supervised FF run, on validation images with every label written in.

FF's ReLU layers can leave most of their units silent for good: pushing the goodness of
negative data down is easiest by switching a unit off, and a unit that never fires gets no
gradient to come back. A layer's useful width is then its units that fire at all. Counted on
the inputs that goodness classification scores (each image with each candidate label):

    python benchmarks/silent_units.py RUN_DIR [RUN_DIR ...] [--images 500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from locallearn.engine import Trainer
from locallearn.run import restore_run


@torch.no_grad()
def unit_activity(trainer: Trainer, x: torch.Tensor, batch_size: int = 100) -> list[tuple[float, float]]:
    """Per layer, for the images `x` with every label: (fraction of units that never fire, mean number of units firing per input)."""
    fired: list[torch.Tensor] = []
    firing: list[float] = []
    for start in range(0, len(x), batch_size):
        outs = trainer.net.forward_blocks(trainer.method.every_label_inputs(x[start : start + batch_size]))
        for k, out in enumerate(outs):
            on = out.flatten(1) > 0
            if k == len(fired):
                fired.append(torch.zeros(on.shape[1], dtype=torch.bool, device=on.device))
                firing.append(0.0)
            fired[k] |= on.any(0)
            firing[k] += on.sum().item()
    inputs = len(x) * trainer.data.num_classes
    return [(1 - f.float().mean().item(), n / inputs) for f, n in zip(fired, firing)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--images", type=int, default=500, help="the first this many validation images (default 500)")
    args = parser.parse_args()
    for run in args.runs:
        trainer = restore_run(run)
        if not hasattr(trainer.method, "every_label_inputs"):
            raise SystemExit(f"{run}: not a supervised FF run (method {trainer.method.name}); silent units are counted on ff-supervised")
        if len(trainer.data.val_x) == 0:
            raise SystemExit(f"{run}: the run has no validation split (data.val_size=0); silent units are counted on validation images")
        for k, (silent, firing) in enumerate(unit_activity(trainer, trainer.data.val_x[: args.images]), 1):
            print(f"{run}  layer {k}: {100 * silent:.1f}% of units never fire, {firing:.0f} fire per input")


if __name__ == "__main__":
    main()
