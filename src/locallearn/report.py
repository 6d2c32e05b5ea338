"""`locallearn report`: a Markdown and an HTML report with PNG plots, for one run or a comparison of several.

Everything comes from the run folders (config.yaml, metrics.jsonl, summary.json,
checkpoint); nothing is retrained. A run that is still going (no summary yet) is
reported from its metrics so far.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from locallearn.atomic import write_text_atomic  # noqa: E402
from locallearn.config import load_yaml  # noqa: E402
from locallearn.errors import RunError  # noqa: E402


@dataclass
class Run:
    folder: Path
    config: dict
    history: list[dict]
    summary: dict | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.folder.resolve().name


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise RunError(f"{folder} is not a run folder (no config.yaml)")
    history = []
    if (folder / "metrics.jsonl").is_file():
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if "epoch" in record:
                history.append(record)
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else None
    return Run(folder, load_yaml((folder / "config.yaml").read_text()), history, summary)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(runs: list[Run], path: Path) -> None:
    """Training loss of every block, and validation accuracy of the main classifier, against epochs."""
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        epochs = [r["epoch"] for r in run.history]
        label = run.name if len(runs) > 1 else ""
        for block in run.history[0]["blocks"] if run.history else []:
            loss_ax.plot(epochs, [r["blocks"][block]["loss"] for r in run.history], label=f"{label} {block}".strip())
        val = [(r["epoch"], r["val"]) for r in run.history if "val" in r]
        primary = (run.summary or {}).get("classifier") or (next(iter(val[0][1])) if val else None)
        if val and primary in val[0][1]:
            val_ax.plot([e for e, _ in val], [100 * v[primary] for _, v in val], marker="o", label=f"{label} {primary}".strip())
    loss_ax.set(xlabel="epoch", ylabel="training loss (per block)", yscale="log", title="local losses")
    val_ax.set(xlabel="epoch", ylabel="validation accuracy %", title="validation accuracy")
    for ax in (loss_ax, val_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    _save(fig, path)


def plot_goodness(run: Run, path: Path) -> bool:
    """Mean goodness of positives and negatives per block over training (FF runs only)."""
    if not run.history or "g_pos" not in next(iter(run.history[0]["blocks"].values())):
        return False
    blocks = list(run.history[0]["blocks"])
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.2 * len(blocks), 3), squeeze=False)
    epochs = [r["epoch"] for r in run.history]
    for ax, block in zip(axes[0], blocks):
        ax.plot(epochs, [r["blocks"][block]["g_pos"] for r in run.history], label="positives")
        ax.plot(epochs, [r["blocks"][block]["g_neg"] for r in run.history], label="negatives")
        ax.set(title=block, xlabel="epoch", ylabel="mean goodness")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)
    return True


def plot_probe_by_depth(runs: list[Run], path: Path) -> bool:
    """Linear-probe test accuracy of every block against its depth."""
    done = [r for r in runs if r.summary and any(b.get("probe_accuracy") is not None for b in r.summary["per_block"])]
    if not done:
        return False
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for run in done:
        blocks = run.summary["per_block"]
        ax.plot(range(1, len(blocks) + 1), [100 * (b.get("probe_accuracy") or float("nan")) for b in blocks], marker="o", label=run.name)
    ax.set(xlabel="block", ylabel="probe test accuracy %", title="linear probe by depth")
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def model_pictures(run: Run, plots: Path) -> list[tuple[str, str]]:
    """Pictures that need the trained model and its data: receptive fields, negatives, goodness histograms.

    Skipped (an empty list) when the run has no checkpoint or its data is not on this machine.
    """
    from locallearn.errors import LocalLearnError
    from locallearn.pictures import save_hybrid_examples, save_receptive_fields
    from locallearn.run import restore_run

    try:
        trainer = restore_run(run.folder)
    except LocalLearnError:
        return []
    data, figures = trainer.data, []
    try:
        save_receptive_fields(plots / "receptive_fields.png", trainer.net.blocks[0].layers[0], tuple(data.image_shape))
        figures.append(("First-layer receptive fields", "plots/receptive_fields.png"))
    except ValueError:
        pass  # a first layer without a plain linear map to show
    if getattr(data, "val_x", None) is None:
        return figures  # streamed data (imagefolder): no validation images in memory to draw from
    generator = torch.Generator(device=data.val_x.device).manual_seed(0)
    if trainer.method.negatives == "hybrid":
        save_hybrid_examples(plots / "hybrid_negatives.png", data.val_x[:6], generator, trainer.method.options.blurs)
        figures.append(("Hybrid negatives (image, partner, mask, hybrid)", "plots/hybrid_negatives.png"))
    if plot_goodness_histograms(trainer, plots / "goodness_histograms.png", generator):
        figures.append(("Goodness of validation positives vs negatives per block, at the end", "plots/goodness_histograms.png"))
    return figures


@torch.no_grad()
def plot_goodness_histograms(trainer, path: Path, generator: torch.Generator) -> bool:
    """Histograms of each block's goodness on validation positives and the method's negatives (FF methods)."""
    data, net = trainer.data, trainer.net
    count = min(1000, data.val_x.shape[0])
    if count == 0 or trainer.method.goodness_kind is None:
        return False
    views = trainer.method.make_views(data.val_x[:count], data.val_y[:count], torch.arange(count), generator)
    if views.num_positive == views.inputs.shape[0]:
        return False
    outputs = net.forward_blocks(views.inputs)
    fig, axes = plt.subplots(1, len(outputs), figsize=(3.2 * len(outputs), 3), squeeze=False)
    for ax, block, out in zip(axes[0], net.blocks, outputs):
        g = block.objective.score(out).cpu()
        ax.hist(g[: views.num_positive].numpy(), bins=40, alpha=0.6, label="positives")
        ax.hist(g[views.num_positive :].numpy(), bins=40, alpha=0.6, label="negatives")
        ax.set(title=block.name, xlabel="goodness")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)
    return True


COLUMNS = ["run", "method", "granularity", "dataset", "epochs", "test acc %", "val acc %", "probe acc % per block", "train time", "samples/s", "peak RSS MB"]


def pct(accuracy: float | None) -> str:
    """A percentage, or a dash for a number a run does not have (no classifier, or `data.val_size=0`)."""
    return "–" if accuracy is None else f"{100 * accuracy:.2f}"


def table_row(run: Run) -> list[str]:
    s, c = run.summary or {}, run.config
    probes = " / ".join(pct(b.get("probe_accuracy")) for b in s.get("per_block", []))
    seconds = s.get("train_seconds", sum(r["epoch_seconds"] for r in run.history))
    return [run.name, c["method"]["name"], c["train"]["granularity"], c["data"]["name"], str(s.get("epochs", len(run.history))),
            pct(s.get("test_accuracy")), pct(s.get("val_accuracy")), probes or "–", f"{seconds / 60:.1f} min",
            f"{s['samples_per_second']:.0f}" if s else "–", f"{s['peak_rss_mb']:.0f}" if s else "–"]


def write_report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write report.md, report.html and plots/*.png into `out` (default: the run folder itself for one run)."""
    runs = [load_run(Path(d)) for d in run_dirs]
    out = Path(out) if out is not None else (runs[0].folder if len(runs) == 1 else Path("."))
    plots = out / "plots"
    figures = []
    plot_learning_curves(runs, plots / "learning_curves.png")
    figures.append(("Learning curves", "plots/learning_curves.png"))
    for run in runs:
        name = "goodness.png" if len(runs) == 1 else f"goodness-{run.name}.png"
        if plot_goodness(run, plots / name):
            figures.append((f"Goodness of positives vs negatives ({run.name})", f"plots/{name}"))
    if plot_probe_by_depth(runs, plots / "probe_by_depth.png"):
        figures.append(("Linear probe accuracy by depth", "plots/probe_by_depth.png"))
    if len(runs) == 1:
        figures += model_pictures(runs[0], plots)
    rows = [table_row(run) for run in runs]
    title = f"locallearn report: {runs[0].name}" if len(runs) == 1 else f"locallearn comparison of {len(runs)} runs"
    md = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    for caption, src in figures:
        md += ["", f"## {caption}", "", f"![{caption}]({src})"]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in row)
    body = [f"<h1>{html.escape(title)}</h1>", "<table>", f"<tr>{cells(COLUMNS, 'th')}</tr>"]
    body += [f"<tr>{cells(row, 'td')}</tr>" for row in rows] + ["</table>"]
    body += [f"<h2>{html.escape(c)}</h2><img src='{html.escape(src)}' alt='{html.escape(c)}'>" for c, src in figures]
    style = "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:4px 8px}"
    write_text_atomic(out / "report.html", f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                      f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return out
