"""The pictures of a report as PNG files (matplotlib, no display needed), drawn so that a reader cannot misread them.

- Axes that count epochs or blocks have integer ticks.
- Accuracy axes span at least `MIN_ACCURACY_SPAN` points, say where they start when that is
  not 0, and mark chance (1 / number of classes) and the best baseline where there is one,
  so a 0.3-point difference does not look like a cliff.
- A figure has no empty panels: a panel without data is left out.
- Receptive fields are titled, with the label pixels that supervised FF writes into the
  image shown apart on their own colour scale.

The figure functions take plain numbers (series per run or per block) and return a
`Figure`; `save_figure` writes it atomically. `locallearn.report` reads the run folders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import nn  # noqa: E402

from locallearn.atomic import write_atomic  # noqa: E402
from locallearn.nn.local import LocallyConnected2d  # noqa: E402
from locallearn.views.hybrid import hybrid_images  # noqa: E402

MIN_ACCURACY_SPAN = 10.0  # percentage points: the narrowest accuracy axis drawn
LABEL_PIXEL_GREY = 0.6  # the colour of the label pixels inside a receptive field (they are drawn apart)

Series = tuple[list[float], list[float]]  # (x, y)


@dataclass(frozen=True)
class Baseline:
    """A reference accuracy (percent) drawn across an accuracy axis, e.g. the end-to-end run of a comparison."""

    label: str
    percent: float


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG atomically (creating its folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def integer_ticks(axis) -> None:
    """Ticks at whole numbers only, for an axis that counts epochs or blocks."""
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def accuracy_axis(ax, percents: list[float], chance: float | None, baseline: Baseline | None = None, what: str = "accuracy %") -> None:
    """Set an honest y range for accuracies in percent, and mark chance and the baseline.

    The range is padded, rounded out to multiples of 5 and at least `MIN_ACCURACY_SPAN` wide;
    it reaches down to chance when chance is near. The y label says where the axis starts
    when it does not start at 0, and where chance lies when it is below the axis.
    """
    shown = [p for p in percents if p is not None and math.isfinite(p)] + ([baseline.percent] if baseline else [])
    if not shown:
        shown = [chance if chance is not None else 0.0]
    low, high = min(shown), max(shown)
    pad = max(1.0, 0.1 * (high - low))
    bottom, top = 5 * math.floor((low - pad) / 5), 5 * math.ceil((high + pad) / 5)
    top = min(top, 100.0)
    bottom = max(min(bottom, top - MIN_ACCURACY_SPAN), 0.0)
    top = max(top, bottom + MIN_ACCURACY_SPAN)
    if chance is not None and bottom - MIN_ACCURACY_SPAN <= chance < bottom:
        bottom = 5 * math.floor(chance / 5)
    ax.set_ylim(bottom, top)
    notes = []
    if bottom > 0:
        notes.append(f"axis from {bottom:g}, not 0")
    if chance is not None:
        if chance >= bottom:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance {chance:.3g} %")
        else:
            notes.append(f"chance {chance:.3g} % is below the axis")
    if baseline is not None:
        ax.axhline(baseline.percent, color="black", linestyle="--", linewidth=1, label=f"{baseline.label}: {baseline.percent:.2f} %")
    ax.set_ylabel(what + (f"\n({'; '.join(notes)})" if notes else ""))


def learning_curves_figure(losses: dict[str, Series], accuracies: dict[str, Series], chance: float | None,
                           baseline: Baseline | None = None) -> Figure:
    """Training loss per block against epochs, and beside it validation accuracy (percent) against epochs.

    `losses` and `accuracies` map a legend label to (epochs, values); a series with a single
    point is drawn as a marker (e.g. a readout measured once, at the end). Without any
    accuracy the figure has the loss panel only.
    """
    panels = 2 if accuracies else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False, sharex=True)
    loss_ax = axes[0][0]
    for label, (epochs, values) in losses.items():
        loss_ax.plot(epochs, values, marker="o" if len(epochs) == 1 else None, label=label)
    values = [v for _, series in losses.values() for v in series]
    log = bool(values) and min(values) > 0 and max(values) > 10 * min(values)  # log scale only when the losses span a decade
    loss_ax.set(xlabel="epoch", ylabel="training loss per block" + (" (log scale)" if log else ""), yscale="log" if log else "linear",
                title="local losses")
    panels_used = [loss_ax]
    if accuracies:
        val_ax = axes[0][1]
        for label, (epochs, values) in accuracies.items():
            val_ax.plot(epochs, values, marker="o", label=label)
        accuracy_axis(val_ax, [v for _, values in accuracies.values() for v in values], chance, baseline, "validation accuracy %")
        val_ax.set(xlabel="epoch", title="validation accuracy")
        panels_used.append(val_ax)
    for ax in panels_used:
        integer_ticks(ax.xaxis)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def goodness_figure(epochs: list[float], goodness: dict[str, tuple[list[float], list[float]]]) -> Figure:
    """Mean goodness of positives and of negatives against epochs, one panel per block ({block: (positives, negatives)})."""
    fig, axes = plt.subplots(1, len(goodness), figsize=(3.2 * len(goodness), 3), squeeze=False)
    for ax, (block, (positives, negatives)) in zip(axes[0], goodness.items()):
        ax.plot(epochs, positives, marker="o", label="positives")
        ax.plot(epochs, negatives, marker="o", label="negatives")
        ax.set(title=block, xlabel="epoch", ylabel="mean goodness")
        integer_ticks(ax.xaxis)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def probe_by_depth_figure(probes: dict[str, list[float | None]], chance: float | None, baseline: Baseline | None = None) -> Figure:
    """Linear-probe test accuracy (percent; None where a block has none) against block depth, one line per run."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, percents in probes.items():
        ax.plot(range(1, len(percents) + 1), [float("nan") if p is None else p for p in percents], marker="o", label=label)
    accuracy_axis(ax, [p for percents in probes.values() for p in percents], chance, baseline, "probe test accuracy %")
    ax.set(xlabel="block (depth)", title="linear probe by depth")
    integer_ticks(ax.xaxis)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def goodness_histograms_figure(goodness: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Figure:
    """Histograms of each block's goodness on positives and on negatives ({block: (positives, negatives)})."""
    fig, axes = plt.subplots(1, len(goodness), figsize=(3.2 * len(goodness), 3), squeeze=False)
    for ax, (block, (positives, negatives)) in zip(axes[0], goodness.items()):
        ax.hist(positives.cpu().numpy(), bins=40, alpha=0.6, label="positives")
        ax.hist(negatives.cpu().numpy(), bins=40, alpha=0.6, label="negatives")
        ax.set(title=block, xlabel="goodness", ylabel="examples")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def to_rgb(image: torch.Tensor, signed: bool = False) -> np.ndarray:
    """(C, H, W) tensor -> (H, W, 3) RGB array in [0, 1].

    Grey images min to max; `signed` weights red (+) / blue (-) on a symmetric scale of
    their own largest |w|, NaN entries (pixels drawn elsewhere) in plain grey.
    """
    image = image.detach().float().cpu()
    missing = image.isnan().any(dim=0)
    image = image.nan_to_num(0.0)
    if signed:
        image = 0.5 + 0.5 * image / image.abs().max().clamp_min(1e-12)
    else:
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    if image.shape[0] == 1:
        rgb = plt.get_cmap("RdBu_r" if signed else "gray")(image[0].numpy())[..., :3]
    else:
        rgb = image.permute(1, 2, 0).numpy()
    rgb[missing.numpy()] = LABEL_PIXEL_GREY
    return rgb


def _draw_grid(fig_or_subfig, rows: list[list[torch.Tensor]], titles: list[str] | None = None, signed: bool = False) -> None:
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    axes = fig_or_subfig.subplots(n_rows, n_cols, squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.08})
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            axes[i][j].imshow(to_rgb(image, signed), interpolation="nearest")
    for j, title in enumerate(titles or []):
        axes[0][j].set_title(title, fontsize=8)


def save_hybrid_examples(path: str | Path, images: torch.Tensor, generator: torch.Generator, blurs: int = 10, labels: torch.Tensor | None = None, count: int = 6) -> Path:
    """PNG with one row per example: the image, its partner, the mask (white: from the image), the hybrid negative.

    Example:
        >>> save_hybrid_examples("hybrids.png", data.train_x[:100], torch.Generator().manual_seed(0))
    """
    negatives, masks, partners = hybrid_images(images, generator, blurs, labels)
    rows = [[images[i], images[partners[i]], masks[i], negatives[i]] for i in range(min(count, images.shape[0]))]
    fig = plt.figure(figsize=(1.3 * 4, 1.3 * len(rows) + 0.3), layout="compressed")
    _draw_grid(fig, rows, ["image", "partner", "mask", "hybrid"])
    return save_figure(fig, path)


def receptive_fields(layer: nn.Module, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """(units, C, h, w) weights of the first linear map in `layer`: dense rows as images, conv kernels, locally connected filters in place."""
    for module in layer.modules():
        if isinstance(module, nn.Linear):
            return module.weight.detach().reshape(-1, *image_shape)
        if isinstance(module, nn.Conv2d):
            return module.weight.detach()
        if isinstance(module, LocallyConnected2d):
            return module.receptive_fields()
    raise ValueError(f"no linear, conv or locally connected map in {type(layer).__name__}")


def split_label_pixels(fields: torch.Tensor, label_pixels: int, image_shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(fields with their first `label_pixels` pixels NaN, (units, label_pixels) weights of those pixels) for whole-image fields.

    Kernels smaller than the image do not line up with the label pixels: returned as they are, with None.
    """
    fields = fields.detach().float().clone()
    if not label_pixels or tuple(fields.shape[1:]) != tuple(image_shape):
        return fields, None
    flat = fields.view(fields.shape[0], -1)
    labels = flat[:, :label_pixels].clone()
    flat[:, :label_pixels] = float("nan")
    return fields, labels


def save_receptive_fields(path: str | Path, layer: nn.Module, image_shape: tuple[int, int, int], count: int = 64,
                          label_pixels: int = 0, title: str = "First-layer receptive fields") -> Path:
    """PNG grid of `count` receptive fields of a first layer, taken evenly across its units, under `title`.

    Red is a positive weight, blue a negative one, each field on a symmetric scale of its own
    largest |w|. With `label_pixels` (supervised FF writes the label into the first pixels of
    the image) and fields that cover the whole image, those pixels are grey in the fields and
    their weights drawn apart, units by labels on their own scale, so they do not take the
    fields' colour scale.

    Example:
        >>> save_receptive_fields("fields.png", trainer.net.blocks[0].layers[0], data.image_shape, label_pixels=10)
    """
    fields = receptive_fields(layer, image_shape)
    units = fields.shape[0]
    chosen, label_weights = split_label_pixels(fields[torch.linspace(0, units - 1, min(count, units)).round().long()], label_pixels, image_shape)
    columns = math.ceil(math.sqrt(chosen.shape[0]))
    rows = [list(chosen[start : start + columns]) for start in range(0, chosen.shape[0], columns)]
    grid_width, side_width = max(1.0 * columns, 4.0), 2.6 if label_weights is not None else 1.3  # inches
    fig = plt.figure(figsize=(grid_width + side_width, grid_width + 0.9))
    fields_fig, side_fig = fig.subfigures(1, 2, width_ratios=[grid_width, side_width])
    _draw_grid(fields_fig, rows, signed=True)
    kind = "units" if tuple(fields.shape[1:]) == tuple(image_shape) else "kernels"
    fields_fig.suptitle(f"{title}: {chosen.shape[0]} of {units} {kind}", fontsize=10)
    scale_ax = side_fig.add_axes([0.3, 0.62, 0.1, 0.25] if label_weights is not None else [0.3, 0.35, 0.2, 0.3])
    scale_ax.imshow(np.linspace(1, -1, 101)[:, None], cmap="RdBu_r", aspect="auto", extent=(0, 1, -1, 1))
    scale_ax.set(xticks=[], yticks=[-1, 0, 1], yticklabels=["-max|w|", "0", "+max|w|"])
    scale_ax.tick_params(labelsize=7)
    scale_ax.set_title("each field's scale", fontsize=8)
    if label_weights is not None:
        label_ax = side_fig.add_axes([0.25, 0.08, 0.6, 0.38])
        limit = float(label_weights.abs().max().clamp_min(1e-12))
        shown = label_ax.imshow(label_weights.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        label_ax.set(xlabel="label", ylabel="unit (grid order)", xticks=range(label_pixels))
        label_ax.tick_params(labelsize=6)
        label_ax.set_title("label-pixel weights\n(grey in the fields; own scale)", fontsize=8)
        side_fig.colorbar(shown, ax=label_ax, fraction=0.08, pad=0.04).ax.tick_params(labelsize=6)
    return save_figure(fig, path)
