"""Cost of a training epoch of recurrent FF against the feed-forward FF net of the same widths, in one process.

Both nets train on the same Fashion-MNIST subset with the engine (`ff-recurrent-small` and
`ff-supervised-small` at `model.hidden` of the recurrent preset); their epochs alternate,
each timed on its own, and the median of each is kept, so that a change in the machine's
load hits both alike. Writes benchmarks/results/rff_cost.json.

    python benchmarks/rff_cost.py [--subset 5000] [--epochs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from locallearn.atomic import write_json_atomic
from locallearn.config import load_config
from locallearn.data import load_dataset
from locallearn.engine import Trainer
from locallearn.records import machine

RESULT = Path(__file__).parent / "results" / "rff_cost.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=5000, help="training examples per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each net")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recurrent = load_config("ff-recurrent-small", ["logging.progress=false"])
    widths = f"model.hidden={recurrent.model.hidden}".replace(" ", "")
    feed_forward = load_config("ff-supervised-small", ["logging.progress=false", widths])
    data = load_dataset("fashion-mnist", val_size=0, train_subset=args.subset)
    trainers = {"ff-recurrent-small": Trainer(recurrent, data), "ff-supervised-small": Trainer(feed_forward, data)}
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.epochs):
        for name, trainer in trainers.items():
            seconds[name].append(trainer.train_epoch()["epoch_seconds"])
    median = {name: statistics.median(times) for name, times in seconds.items()}
    result = {
        "command": f"python benchmarks/rff_cost.py --subset {args.subset} --epochs {args.epochs} --threads {args.threads}",
        "hidden": recurrent.model.hidden,
        "iterations": recurrent.method.iterations,
        "train_examples": args.subset,
        "threads": args.threads,
        "machine": machine(),
        "epoch_seconds": seconds,
        "median_epoch_seconds": median,
        "recurrent_over_feed_forward": median["ff-recurrent-small"] / median["ff-supervised-small"],
        "note": "epochs alternate between the two nets in one process; the machine was shared with other jobs, so absolute times vary, the ratio less",
    }
    write_json_atomic(RESULT, result)
    print(f"seconds per epoch of {args.subset} examples (median of {args.epochs}): " +
          ", ".join(f"{name} {value:.2f}" for name, value in median.items()) + f"; ratio {result['recurrent_over_feed_forward']:.2f}")


if __name__ == "__main__":
    main()
