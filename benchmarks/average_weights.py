"""Goodness accuracy of supervised FF with the weights averaged over several epochs' checkpoints.

A run keeps only its last checkpoint, so keep a copy of the run folder after each epoch of
interest as `SNAP_DIR/eN` (e.g. a shell loop that copies the folder whenever
`checkpoint.json` names a new epoch). This script averages the network tensors of the
epochs in each range and scores the summed goodness on validation and test:

    python benchmarks/average_weights.py SNAP_DIR 51-60 56-60 60
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from locallearn.run import restore_run


def network_tensors(snap: Path, epoch: int) -> dict[str, torch.Tensor]:
    tensors = load_file(snap / f"e{epoch}" / f"checkpoint-{epoch:04d}.safetensors")
    return {name[4:]: t for name, t in tensors.items() if name.startswith("net.")}


def goodness_accuracy(trainer, split: str, batch_size: int = 500) -> float:
    x, y = getattr(trainer.data, f"{split}_x"), getattr(trainer.data, f"{split}_y")
    correct = sum(int((trainer.method.predict(trainer.net, x[i : i + batch_size])["goodness"].argmax(1) == y[i : i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return 100 * correct / len(x)


def main(snap: Path, ranges: list[str]) -> None:
    spans = [tuple(int(v) for v in r.split("-")) if "-" in r else (int(r), int(r)) for r in ranges]
    trainer = restore_run(snap / f"e{spans[0][1]}")
    print(f"| {snap} epochs averaged | val % | test % |\n| --- | --- | --- |")
    for first, last in spans:
        states = [network_tensors(snap, e) for e in range(first, last + 1)]
        trainer.net.load_state_dict({name: torch.stack([s[name] for s in states]).mean(0) for name in states[0]})
        print(f"| {first}-{last} | {goodness_accuracy(trainer, 'val'):.2f} | {goodness_accuracy(trainer, 'test'):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: python benchmarks/average_weights.py SNAP_DIR FIRST-LAST [FIRST-LAST ...] (SNAP_DIR/eN: copies of a supervised FF run folder after epoch N)")
    main(Path(sys.argv[1]), sys.argv[2:])
