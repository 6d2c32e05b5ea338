"""The readout of a saved run fitted again at several probe settings, on features computed once.

`locallearn eval RUN_DIR eval.probe_epochs=N` fits every block's probe as well as the readout
and recomputes the features each time; to ask how far the readout alone moves with its
length, rate, L2 penalty or batch, this computes the run's features once and fits only the
readout (the blocks of `method.readout_last`) at each setting, the way `locallearn eval`
fits it (the same function, seed and features, so the same numbers). A choice must be made
on the validation column; the test column is there to report it:

    python benchmarks/readout_sweep.py RUN_DIR EPOCHS[,LR[,WEIGHT_DECAY[,BATCH]]] ...

e.g. `python benchmarks/readout_sweep.py runs/ff-unsupervised 10 30 50,0.001,0.001`.
Each setting prints one JSON line; the schedule is the run's `eval.probe_schedule`.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from locallearn.errors import LocalLearnError
from locallearn.evaluate import fit_linear_probe, probe_accuracy, split_features, split_labels
from locallearn.run import restore_run


def parse_setting(text: str) -> dict:
    """`EPOCHS[,LR[,WEIGHT_DECAY[,BATCH]]]` -> keyword arguments; the defaults (lr 1e-3, no penalty, batch 256) are `locallearn eval`'s."""
    parts = text.split(",")
    if not 1 <= len(parts) <= 4:
        raise SystemExit(f"setting {text!r}: expected EPOCHS[,LR[,WEIGHT_DECAY[,BATCH]]], e.g. 30 or 50,0.001,0,256")
    parts += ["0.001", "0", "256"][len(parts) - 1:]
    try:
        epochs, lr, weight_decay, batch = int(parts[0]), float(parts[1]), float(parts[2]), int(parts[3])
    except ValueError:
        raise SystemExit(f"setting {text!r}: EPOCHS and BATCH must be integers, LR and WEIGHT_DECAY numbers") from None
    if min(epochs, lr, batch) <= 0 or weight_decay < 0:
        raise SystemExit(f"setting {text!r}: EPOCHS, LR and BATCH must be positive, WEIGHT_DECAY not negative")
    return {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch}


def readout_scores(run: str, settings: list[dict]):
    """Yield the run's features' timing, then for each setting its validation and test accuracy (%) and fitting time."""
    trainer = restore_run(run)
    config, data = trainer.config, trainer.data
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    start = time.perf_counter()
    train_size = config.eval.feature_train_size
    features = split_features(trainer.method, trainer.net, data, config.data.eval_batch_size, train_size)
    yield {"features_seconds": round(time.perf_counter() - start, 1)}
    blocks = trainer.method.readout_blocks(len(trainer.net.blocks))
    readout = {split: torch.cat([feats[i] for i in blocks], dim=1) for split, feats in features.items()}
    labels = split_labels(data, train_size)
    for setting in settings:
        start = time.perf_counter()
        probe = fit_linear_probe(readout["train"], labels["train"], data.num_classes, seed=config.train.seed, schedule=config.eval.probe_schedule, **setting)
        scores = {split: round(100 * probe_accuracy(probe, readout[split], labels[split]), 2) for split in ("val", "test")}
        yield setting | scores | {"seconds": round(time.perf_counter() - start, 1)}


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.split("\n\n")[2].strip())
    try:
        for line in readout_scores(sys.argv[1], [parse_setting(s) for s in sys.argv[2:]]):
            print(json.dumps(line), flush=True)
    except LocalLearnError as err:
        raise SystemExit(f"readout_sweep: {err}") from None
