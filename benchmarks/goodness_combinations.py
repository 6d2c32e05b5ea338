"""Ways of combining the layers' goodness in supervised FF classification, scored on validation and test.

The engine classifies an image by the plain sum of its layers' goodness for each label
(`method.skip_first` leaves out the first layer, `method.score_depth` the layers after the
first N). This script asks whether another
combination of the same per-layer scores would do better, fixed or fitted by softmax
regression on training images; a choice must be made on the validation column, the test
column is there to report it:

    python benchmarks/goodness_combinations.py runs/bench/ff-supervised-60u [RUN ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

from locallearn.run import restore_run

Combination = Callable[[torch.Tensor], torch.Tensor]  # (L, N, C) per-layer goodness -> (N, C) scores


def goodness_tables(run: Path, batch_size: int = 500, train_images: int = 10000) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For `train_images` random training images and the validation and test splits: the (L, N, C) goodness of every layer for every image and label, and the labels."""
    trainer = restore_run(run)
    if not hasattr(trainer.method, "goodness_per_label"):
        raise SystemExit(f"{run}: not a supervised FF run (method {trainer.method.name}); goodness combinations need ff-supervised")
    data = trainer.data
    chosen = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))[:train_images]
    splits = {"train": (data.train_x[chosen], data.train_y[chosen]), "val": (data.val_x, data.val_y), "test": (data.test_x, data.test_y)}
    tables = {}
    for split, (x, y) in splits.items():
        chunks = [torch.stack(trainer.method.goodness_per_label(trainer.net, x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        tables[split] = (torch.cat(chunks, dim=1), y)
    return tables


def fitted(goodness: torch.Tensor, labels: torch.Tensor, per_layer: bool) -> Combination:
    """Softmax regression on (L, N, C) goodness: scores = sum over layers of w_l * goodness_l + b_label, by cross-entropy (L-BFGS).

    `per_layer` fits one weight per layer; otherwise one weight scales the plain sum, so only the label offsets can change its argmax.
    """
    def terms(g: torch.Tensor) -> torch.Tensor:
        return g if per_layer else g.sum(0, keepdim=True)

    spread = terms(goodness).flatten(1).std(dim=1).view(-1, 1, 1)  # the weights start at 1 on terms of unit spread
    weight = torch.ones(spread.shape, requires_grad=True)
    offset = torch.zeros(goodness.shape[-1], requires_grad=True)

    def scores(g: torch.Tensor) -> torch.Tensor:
        return (terms(g) / spread * weight).sum(0) + offset

    optimizer = torch.optim.LBFGS([weight, offset], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores(goodness), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return lambda g: scores(g).detach()


def combinations(num_layers: int, layer_scale: torch.Tensor) -> dict[str, Combination]:
    """Candidate combinations; `layer_scale` (L,) is each layer's goodness spread on the validation split."""
    named: dict[str, Combination] = {
        "sum of all layers (method.skip_first=false)": lambda g: g.sum(0),
        "sum without the first (method.skip_first=true)": lambda g: g[1:].sum(0),
        "sum of the layers each divided by its spread": lambda g: (g / layer_scale.view(-1, 1, 1)).sum(0),
    }
    for t in (10, 100, 1000):
        named[f"mean over layers of softmax(goodness / {t})"] = lambda g, t=t: torch.softmax(g / t, dim=-1).mean(0)
    for k in range(1, num_layers + 1):
        named[f"layer {k} alone" + (" (method.score_depth=1)" if k == 1 else "")] = lambda g, k=k: g[k - 1]
    for k in range(2, num_layers):
        named[f"sum of layers 1-{k} (method.score_depth={k})"] = lambda g, k=k: g[:k].sum(0)
    return named


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return 100 * (scores.argmax(dim=1) == labels).float().mean().item()


def report(run: Path) -> None:
    tables = goodness_tables(run)
    val_goodness = tables["val"][0]
    named = combinations(val_goodness.shape[0], val_goodness.flatten(1).std(dim=1))
    named["sum of all layers with an offset per label, fitted on training images"] = fitted(*tables["train"], per_layer=False)
    named["a weight per layer and an offset per label, fitted on training images"] = fitted(*tables["train"], per_layer=True)
    rows = [(name, accuracy(f(tables["val"][0]), tables["val"][1]), accuracy(f(tables["test"][0]), tables["test"][1])) for name, f in named.items()]
    best = max(rows, key=lambda r: r[1])[0]
    print(f"\n{run}\n\n| combination | val % | test % |\n| --- | --- | --- |")
    for name, val, test in rows:
        print(f"| {name}{' (best on val)' if name == best else ''} | {val:.2f} | {test:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python benchmarks/goodness_combinations.py RUN_DIR [RUN_DIR ...] (finished ff-supervised runs)")
    for arg in sys.argv[1:]:
        report(Path(arg))
