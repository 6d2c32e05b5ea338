"""Evaluation that makes methods comparable: the method's own classifiers, and linear probes.

`classify` scores a split with every classifier a method has (for FF: goodness over all
labels in one batched pass; for backprop: the heads). `linear_probes` trains a softmax
classifier on frozen features of each block (and on the method's readout features), with
no gradient into the network; it selects nothing on the test set.

Each takes tensors, or batches streamed from any data (`data.eval_batches(split, ...)`,
see `locallearn.data`), so that image folders too large for memory are evaluated the same way.

`evaluate_final` is a run's final evaluation (classifiers on val and test, active units, probes, kNN).
Accuracies are counts over the examples, exact fractions rather than float32 means, and a
`progress(phase, done, total)` callback hears how far each named phase is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from locallearn.methods.base import Method
from locallearn.nn.network import LocalNet
from locallearn.optim import lr_factor

if TYPE_CHECKING:
    from locallearn.config import Config
    from locallearn.engine import Trainer

Progress = Callable[[str, int, int], None]
"""`progress(phase, done, total)`: told how far a named phase of an evaluation is (see `monitor.PhaseProgress`)."""

T = TypeVar("T")


PROBE_BATCH_SIZE = 256  # examples per step of a linear probe


def ticker(progress: Progress | None, phase: str, total: int) -> Callable[[], None]:
    """A function to call after each of the `total` steps of `phase`: it tells `progress` (if any) how many are done."""
    done = 0
    if progress is not None:
        progress(phase, done, total)

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(phase, done, total)

    return tick


def reported(items: Iterable[T], progress: Progress | None, phase: str, total: int) -> Iterator[T]:
    """`items` unchanged, telling `progress` (if any) after each one how many of `total` are done."""
    tick = ticker(progress, phase, total)
    for item in items:
        yield item
        tick()


def batch_count(data, split: str, batch_size: int, limit: int | None = None) -> int:
    """How many batches `data.eval_batches(split, batch_size, limit)` yields."""
    size = data.split_size(split) if limit is None else min(limit, data.split_size(split))
    return -(-size // batch_size)


def classify(method: Method, net: LocalNet, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Accuracy (0..1) of every classifier of `method.predict` on (x, y)."""
    return classify_batches(method, net, ((x[start : start + batch_size], y[start : start + batch_size]) for start in range(0, x.shape[0], batch_size)))


def classify_split(method: Method, net: LocalNet, data, split: str, batch_size: int, progress: Progress | None = None) -> dict[str, float]:
    """Accuracy (0..1) of every classifier of `method.predict` on `split` of `data` (in memory or streamed)."""
    batches = data.eval_batches(split, batch_size)
    return classify_batches(method, net, reported(batches, progress, f"{split} classifiers", batch_count(data, split, batch_size)))


@torch.no_grad()
def classify_batches(method: Method, net: LocalNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Accuracy (0..1) of every classifier of `method.predict` over (x, y) batches.

    A method without classifiers (`predict` gives {}) stops after the first batch: nothing
    more is read or decoded.
    """
    net.eval()
    correct: dict[str, torch.Tensor] = {}
    total = 0
    for x, target in batches:
        if x.shape[0] == 0:
            continue
        scores = method.predict(net, x)
        if not scores:
            return {}
        total += x.shape[0]
        for name, s in scores.items():
            correct[name] = correct.get(name, 0) + (s.argmax(dim=1) == target).sum()
    return {name: int(c) / max(total, 1) for name, c in correct.items()}


def block_features(method: Method, net: LocalNet, x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Each block's probe features for all of `x`, computed in batches."""
    return batch_features(method, net, (x[start : start + batch_size] for start in range(0, max(x.shape[0], 1), batch_size)))


@torch.no_grad()
def batch_features(method: Method, net: LocalNet, batches: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Each block's probe features over image batches (at least one, maybe empty), concatenated."""
    net.eval()
    chunks = [method.features(net, x) for x in batches]
    return [torch.cat(parts) for parts in zip(*chunks)]


class LinearProbe(nn.Module):
    """Standardise features with training statistics, then a linear softmax classifier.

    It starts from zero weights (the problem is convex), so a probe depends only on the
    features and the seed of its batch order: `locallearn eval` gives the run's numbers.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(mean.shape[0], num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int, lr: float, seed: int, batch_size: int = PROBE_BATCH_SIZE,
                     schedule: str = "constant", weight_decay: float = 0.0, on_epoch: Callable[[], None] | None = None) -> LinearProbe:
    """Train a linear probe with Adam on fixed features (a fixed number of epochs, no early stopping).

    `schedule` "cosine" decays the rate to zero over the epochs, so the probe settles at the
    optimum instead of ending wherever the last steps' noise left it. `weight_decay` adds
    (weight_decay/2)·||W||² to the loss (coupled, not AdamW's decay, so that optimum is the
    L2-regularised one), meant for features where standardising makes a rarely active
    unit's few values large. `on_epoch` (if given) is called after every epoch.
    """
    generator = torch.Generator().manual_seed(seed)
    probe = LinearProbe(features.mean(0), features.std(0) + 1e-6, num_classes).to(features.device)
    optimizer = torch.optim.Adam([{"params": [probe.linear.weight], "weight_decay": weight_decay}, {"params": [probe.linear.bias]}], lr=lr)
    steps = epochs * -(-features.shape[0] // batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(schedule, step, steps))
    for _ in range(epochs):
        order = torch.randperm(features.shape[0], generator=generator).to(features.device)
        for start in range(0, features.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(probe(features[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if on_epoch is not None:
            on_epoch()
    return probe


@torch.no_grad()
def probe_accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Accuracy (0..1) of `probe` on the features; None for an empty split (e.g. `data.val_size=0`)."""
    if features.shape[0] == 0:
        return None
    return int((probe(features).argmax(1) == labels).sum()) / features.shape[0]


def split_features(method: Method, net: LocalNet, data, batch_size: int, train_size: int | None = None,
                   progress: Progress | None = None) -> dict[str, list[torch.Tensor]]:
    """Per-block features of the train, val and test splits; of train only its fixed subset of `train_size` examples (None: all).

    The labels in the same order are `split_labels(data, train_size)`.
    """
    limits = {"train": train_size, "val": None, "test": None}
    return {split: batch_features(method, net, reported((x for x, _ in data.eval_batches(split, batch_size, limit)), progress,
                                                        f"{split} features", batch_count(data, split, batch_size, limit)))
            for split, limit in limits.items()}


def split_labels(data, train_size: int | None = None) -> dict[str, torch.Tensor]:
    """The labels of the train (its fixed subset of `train_size` examples), val and test splits, in `split_features`' order."""
    return {"train": data.labels("train", train_size), "val": data.labels("val"), "test": data.labels("test")}


def mirrored_train_features(method: Method, net: LocalNet, data, batch_size: int, train_size: int | None = None,
                            progress: Progress | None = None) -> list[torch.Tensor]:
    """Per-block features of the same training images as `split_features`, each mirrored left-right."""
    batches = (x.flip(-1) for x, _ in data.eval_batches("train", batch_size, train_size))
    return batch_features(method, net, reported(batches, progress, "mirrored train features", batch_count(data, "train", batch_size, train_size)))


def probe_sets(method: Method, net: LocalNet, data, batch_size: int, features: dict[str, list[torch.Tensor]] | None = None,
               train_size: int | None = None, flip: bool = False, progress: Progress | None = None) -> tuple[dict, dict]:
    """The per-block features and labels probes fit on (train, with `flip` its mirrored copy too) and score (val, test)."""
    features = dict(features or split_features(method, net, data, batch_size, train_size, progress))
    labels = split_labels(data, train_size)
    if flip:
        mirrored = mirrored_train_features(method, net, data, batch_size, train_size, progress)
        features["train"] = [torch.cat(pair) for pair in zip(features["train"], mirrored)]
        labels["train"] = torch.cat([labels["train"], labels["train"]])
    return features, labels


def linear_probes(method: Method, net: LocalNet, data, readout_blocks: list[int], epochs: int, lr: float, seed: int, batch_size: int,
                  features: dict[str, list[torch.Tensor]] | None = None, train_size: int | None = None,
                  flip: bool = False, schedule: str = "constant", weight_decay: float = 0.0,
                  progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Val and test accuracy of a probe on each block, and of a readout on the concatenated `readout_blocks`.

    The probes train on the fixed subset of `train_size` training examples (None: all),
    with `flip` on each of them mirrored as well (twice the examples; val and test are
    never mirrored), with `schedule` "cosine" at a rate decaying to zero, and with an L2
    penalty of `weight_decay` (see `fit_linear_probe`). `features`
    (from `split_features` with the same `train_size`) saves recomputing them when the
    caller has them already. `progress` hears of every feature batch and probe epoch.
    """
    features, labels = probe_sets(method, net, data, batch_size, features, train_size, flip, progress)
    names = [block.name for block in net.blocks]
    candidates = {name: [i] for i, name in enumerate(names)}
    if len(readout_blocks) > 1:
        candidates["readout"] = readout_blocks
    results = {}
    tick = ticker(progress, "probes", len(candidates) * epochs)
    for name, blocks in candidates.items():
        pick = {split: torch.cat([feats[i] for i in blocks], dim=1) for split, feats in features.items()}
        probe = fit_linear_probe(pick["train"], labels["train"], data.num_classes, epochs, lr, seed, schedule=schedule, weight_decay=weight_decay,
                                 on_epoch=tick)
        results[name] = {"val": probe_accuracy(probe, pick["val"], labels["val"]), "test": probe_accuracy(probe, pick["test"], labels["test"])}
    results.setdefault("readout", results[names[readout_blocks[0]]])
    return results


@torch.no_grad()
def knn_predict(train_feats: Tensor, train_y: Tensor, test_feats: Tensor, k: int = 20, temperature: float = 0.07, num_classes: int | None = None, max_elements: int = 2**25) -> Tensor:
    """Weighted k-nearest-neighbour class scores (N_test, num_classes), as InstDisc (Wu et al. 2018) and DINO evaluate:
    each of a test example's `k` nearest training examples by cosine similarity votes for its class with weight
    `exp(similarity / temperature)`. Test examples go in chunks whose similarity matrix stays under `max_elements` numbers."""
    num_classes = num_classes or int(train_y.max()) + 1
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    chunk = max(1, max_elements // max(train.shape[0], 1))
    scores = []
    for start in range(0, test_feats.shape[0], chunk):
        test = F.normalize(test_feats[start : start + chunk].float(), dim=1)
        similarity, neighbours = (test @ train.T).topk(k, dim=1)
        votes = torch.zeros(test.shape[0], num_classes, device=test.device)
        scores.append(votes.scatter_add_(1, train_y[neighbours], (similarity / temperature).exp()))
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, device=train_feats.device)


def knn_accuracies(train_feats: list[torch.Tensor], train_y: torch.Tensor, test_feats: list[torch.Tensor], test_y: torch.Tensor, k: int,
                   temperature: float, progress: Progress | None = None, chunk: int = 1000) -> list[float | None]:
    """Weighted k-NN accuracy (see `knn_predict`) of each block's features, in chunks of `chunk` test examples; None for no test examples."""
    n = test_y.shape[0]
    tick = ticker(progress, "kNN", len(test_feats) * -(-n // chunk))
    num_classes = int(torch.maximum(train_y.max(), test_y.max())) + 1 if n else 0
    accuracies = []
    for train, test in zip(train_feats, test_feats):
        correct = 0
        for start in range(0, n, chunk):
            scores = knn_predict(train, train_y, test[start : start + chunk], k, temperature, num_classes)
            correct += int((scores.argmax(1) == test_y[start : start + chunk]).sum())
            tick()
        accuracies.append(correct / n if n else None)
    return accuracies


class ActiveUnits:
    """While attached to `net`, marks per block which output units (every output number) are positive for at least one input.

    A unit that never fires is width the block does not use (FF's ReLU layers can switch units off for good).
    It listens through forward hooks, so it costs no extra pass when attached while the net classifies.
    """

    def __init__(self, net: LocalNet):
        self.fired: list[torch.Tensor | None] = [None] * len(net.blocks)
        self.handles = [block.register_forward_hook(self._mark(i)) for i, block in enumerate(net.blocks)]

    def _mark(self, index: int) -> Callable:
        def hook(module, args, out: torch.Tensor) -> None:
            on = (out.detach().flatten(1) > 0).any(0)
            self.fired[index] = on if self.fired[index] is None else self.fired[index] | on
        return hook

    def close(self) -> list[float | None]:
        """Detach; per block, the fraction of its units that fired (None: it saw no input)."""
        for handle in self.handles:
            handle.remove()
        return [None if fired is None else float(fired.float().mean()) for fired in self.fired]


@torch.no_grad()
def active_units(method: Method, net: LocalNet, batches: Iterable[torch.Tensor]) -> list[float | None]:
    """Per block, the fraction of its units (see `ActiveUnits`) that fire for at least one image of `batches`, for supervised
    FF each with every label written in (`every_label_inputs`: what goodness classification scores). None for no images."""
    net.eval()
    inputs = getattr(method, "every_label_inputs", None) or (lambda x: x)
    counter = ActiveUnits(net)
    try:
        for x in batches:
            if x.shape[0]:
                net.forward_blocks(inputs(x))
    finally:
        fractions = counter.close()
    return fractions


def evaluate_final(trainer: Trainer, config: Config, progress: Progress | None = None) -> tuple[dict, list[dict]]:
    """Test and validation accuracy of every classifier, per-block active units (on val), linear probes and kNN, and the readout.

    `progress` hears of each phase (val and test classifiers, active units, features, probes, kNN) as it goes.
    """
    data, method, net = trainer.data, trainer.method, trainer.net
    batch = config.data.eval_batch_size
    ev = config.eval
    counter = ActiveUnits(net) if ev.active_units else None  # counts while the val classifiers run: no extra pass
    try:
        val = classify_split(method, net, data, "val", batch, progress) if data.split_size("val") else {}
    finally:
        fractions = counter.close() if counter else None
    if counter and not val and data.split_size("val"):  # no classifiers (they stop after one batch): a pass of its own
        val_images = (x for x, _ in data.eval_batches("val", batch))
        fractions = active_units(method, net, reported(val_images, progress, "active units", batch_count(data, "val", batch)))
    test = classify_split(method, net, data, "test", batch, progress)
    per_block = [{"name": b.name, "accuracy": test.get(b.name)} for b in net.blocks]
    for entry, fraction in zip(per_block, fractions or []):
        entry["active_units"] = fraction
    result = {"val": val, "test": test}
    if not (ev.probes or ev.knn):
        return result, per_block
    features = split_features(method, net, data, batch, ev.feature_train_size, progress)
    if ev.probes:
        readout = method.readout_blocks(len(net.blocks))
        probes = linear_probes(method, net, data, readout, ev.probe_epochs, ev.probe_lr, config.train.seed, batch, features, ev.feature_train_size,
                               ev.probe_flip, ev.probe_schedule, ev.probe_weight_decay, progress)
        for entry in per_block:
            entry["probe_accuracy"] = probes[entry["name"]]["test"]
            entry["probe_val_accuracy"] = probes[entry["name"]]["val"]
        result["readout"] = probes["readout"]
    if ev.knn:
        labels = split_labels(data, ev.feature_train_size)
        accuracies = knn_accuracies(features["train"], labels["train"], features["test"], labels["test"], ev.knn_k, ev.knn_temperature, progress)
        for entry, accuracy in zip(per_block, accuracies):
            entry["knn_accuracy"] = accuracy
    return result, per_block


def readout_sweep(trainer: Trainer, config: Config, settings: list[dict], progress: Progress | None = None) -> list[dict]:
    """The readout (the blocks of `method.readout_blocks`) fitted again at each setting (`fit_linear_probe`'s `epochs` and any of
    `lr`, `weight_decay`, `batch_size`; the others as `evaluate_final` fits it) on features computed once: each full setting with
    its val and test accuracy. Settings are chosen on val; test is there to report the choice."""
    data, method, net, ev = trainer.data, trainer.method, trainer.net, config.eval
    settings = [{"lr": ev.probe_lr, "weight_decay": ev.probe_weight_decay, "batch_size": PROBE_BATCH_SIZE} | setting for setting in settings]
    features, labels = probe_sets(method, net, data, config.data.eval_batch_size, None, ev.feature_train_size, ev.probe_flip, progress)
    blocks = method.readout_blocks(len(net.blocks))
    readout = {split: torch.cat([feats[i] for i in blocks], dim=1) for split, feats in features.items()}
    rows = []
    for setting in settings:
        probe = fit_linear_probe(readout["train"], labels["train"], data.num_classes, seed=config.train.seed, schedule=ev.probe_schedule,
                                 on_epoch=ticker(progress, f"readout {len(rows) + 1}/{len(settings)}", setting["epochs"]), **setting)
        rows.append(setting | {split: probe_accuracy(probe, readout[split], labels[split]) for split in ("val", "test")})
    return rows
