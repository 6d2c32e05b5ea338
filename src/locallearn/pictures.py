"""Pictures of what unsupervised FF sees and learns, as PNG files (matplotlib, no display needed).

- `save_hybrid_examples`: rows of (image, partner image, mask, hybrid negative).
- `save_receptive_fields`: the weights of a first layer, laid out on the input image.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from locallearn.atomic import write_atomic  # noqa: E402
from locallearn.nn.local import LocallyConnected2d  # noqa: E402
from locallearn.views.hybrid import hybrid_images  # noqa: E402


def _displayable(image: torch.Tensor, signed: bool):
    """(C, H, W) tensor -> (H, W) or (H, W, 3) array in [0, 1]: min to max, or with `signed` -max|w| to max|w| (0 in the middle)."""
    image = image.detach().float().cpu()
    if signed:
        image = 0.5 + 0.5 * image / image.abs().max().clamp_min(1e-12)
    else:
        low, high = image.min(), image.max()
        image = (image - low) / (high - low) if high > low else torch.zeros_like(image)
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def _save_grid(path: str | Path, rows: list[list[torch.Tensor]], titles: list[str] | None = None, signed: bool = False) -> Path:
    """Images (C, H, W) in a grid, one list per row (grey, or red/blue for `signed` weights); written atomically."""
    path = Path(path)
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            axes[i][j].imshow(_displayable(image, signed), cmap="RdBu_r" if signed else "gray", vmin=0, vmax=1, interpolation="nearest")
    for j, title in enumerate(titles or []):
        axes[0][j].set_title(title, fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def save_hybrid_examples(path: str | Path, images: torch.Tensor, generator: torch.Generator, blurs: int = 10, labels: torch.Tensor | None = None, count: int = 6) -> Path:
    """PNG with one row per example: the image, its partner, the mask (white: from the image), the hybrid negative.

    Example:
        >>> save_hybrid_examples("hybrids.png", data.train_x[:100], torch.Generator().manual_seed(0))
    """
    negatives, masks, partners = hybrid_images(images, generator, blurs, labels)
    rows = [[images[i], images[partners[i]], masks[i], negatives[i]] for i in range(min(count, images.shape[0]))]
    return _save_grid(path, rows, ["image", "partner", "mask", "hybrid"])


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


def save_receptive_fields(path: str | Path, layer: nn.Module, image_shape: tuple[int, int, int], count: int = 64) -> Path:
    """PNG grid of `count` receptive fields of a first layer, taken evenly across its units.

    Example:
        >>> save_receptive_fields("fields.png", trainer.net.blocks[0].layers[0], data.image_shape)
    """
    fields = receptive_fields(layer, image_shape)
    chosen = fields[torch.linspace(0, fields.shape[0] - 1, min(count, fields.shape[0])).round().long()]
    columns = math.ceil(math.sqrt(chosen.shape[0]))
    rows = [list(chosen[start : start + columns]) for start in range(0, chosen.shape[0], columns)]
    return _save_grid(path, rows, signed=True)
