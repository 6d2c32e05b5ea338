"""`locallearn report`: a Markdown and an HTML report with PNG plots, for one run or a comparison of several.

Everything comes from the run folders (config.yaml, metrics.jsonl, summary.json,
checkpoint); nothing is retrained. A run that is still going (no summary yet) is
reported from its metrics so far. The report holds a comparison table (one row per
run: preset, dataset, network, epochs, accuracies, time, throughput, memory, probes), per run
every classifier's, probe's and kNN's accuracy, the plots (drawn by `locallearn.pictures`),
for several runs the config keys that differ, and last the resolved configs.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from locallearn import pictures
from locallearn.atomic import write_text_atomic
from locallearn.config import load_yaml
from locallearn.data import DATASET_NAMES, NUM_CLASSES
from locallearn.errors import LocalLearnError, RunError
from locallearn.pictures import Baseline

PLOTS = Path("plots")  # where the PNGs go, relative to the report


@dataclass
class Run:
    """A run folder as read from disk: config, per-epoch records, summary (None while running), final evaluation."""

    folder: Path
    config: dict
    history: list[dict]
    summary: dict | None = None
    final: dict = field(default_factory=dict)  # metrics.jsonl's last {"final": ...}: val/test per classifier, readout
    config_text: str = ""
    name: str = field(init=False)  # the folder's name; `give_unique_names` lengthens it where runs share one

    def __post_init__(self) -> None:
        self.name = self.folder.resolve().name


def give_unique_names(runs: list[Run]) -> None:
    """Name each run by as many trailing parts of its path as it takes to tell it from the others (seed0 -> lr-0.1/seed0)."""
    for depth in range(1, max(len(r.folder.resolve().parts) for r in runs) + 1):
        names = ["/".join(r.folder.resolve().parts[-depth:]) for r in runs]
        if len(set(names)) == len(names):
            break
    for run, name in zip(runs, names):
        run.name = name


@dataclass(frozen=True)
class Picture:
    title: str
    src: str  # relative to the report
    caption: str


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise RunError(f"{folder} is not a run folder (no config.yaml)")
    history, final = [], {}
    if (folder / "metrics.jsonl").is_file():
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if "epoch" in record:
                history.append(record)
            elif "final" in record:
                final = record["final"]
    summary = None
    if (folder / "summary.json").is_file():
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except json.JSONDecodeError as err:
            raise RunError(f"{folder / 'summary.json'} is not valid JSON ({err}); delete it to report the run from its metrics") from None
    config_text = (folder / "config.yaml").read_text()
    return Run(folder, load_yaml(config_text), history, summary, final, config_text)


def pct(accuracy: float | None) -> str:
    """A percentage, or a dash for a number a run does not have (no classifier, or `data.val_size=0`)."""
    return "–" if accuracy is None else f"{100 * accuracy:.2f}"


def chance_percent(runs: list[Run]) -> float | None:
    """Chance accuracy in percent (1 / number of classes) when every run is on a dataset of known class count."""
    return 100.0 / NUM_CLASSES if all(r.config["data"]["name"] in DATASET_NAMES for r in runs) else None


def baseline(runs: list[Run], key: str, what: str) -> Baseline | None:
    """The reference line of a comparison: its best end-to-end run, else its best run, by summary `key` (`what` says which number); none for one run."""
    finished = [r for r in runs if r.summary and r.summary.get(key) is not None]
    if len(runs) < 2 or not finished:
        return None
    end_to_end = [r for r in finished if r.config["train"]["granularity"] == "end-to-end"]
    best = max(end_to_end or finished, key=lambda r: r.summary[key])
    return Baseline(f"{'end-to-end' if end_to_end else 'best'} run {best.name} ({what})", 100 * best.summary[key])


def classifier_of(run: Run) -> str | None:
    """The classifier whose accuracy is the run's: from its summary, or while running the first one validated."""
    if run.summary:
        return run.summary["classifier"]
    validated = next((r["val"] for r in run.history if r.get("val")), {})
    return next(iter(validated), None)


def final_val_accuracy(run: Run, classifier: str | None) -> float | None:
    """The validation accuracy of `classifier` measured after training (metrics.jsonl's final record), if any."""
    final = run.final.get("readout", {}) if classifier == "readout" else {"val": run.final.get("val", {}).get(classifier)}
    return final.get("val")


def learning_curve_series(runs: list[Run]) -> tuple[dict, dict]:
    """({label: (epochs, loss)} per block, {label: (epochs, validation accuracy %)} per run's classifier).

    A run whose classifier was validated only after training (the readout, or `train.eval_every=0`)
    has one point at its last epoch; a run without any validation accuracy has no accuracy series.
    """
    losses, accuracies = {}, {}
    for run in runs:
        prefix = f"{run.name} " if len(runs) > 1 else ""
        epochs = [r["epoch"] for r in run.history]
        for block in run.history[0]["blocks"] if run.history else []:
            losses[prefix + block] = (epochs, [r["blocks"][block]["loss"] for r in run.history])
        classifier = classifier_of(run)
        val = [(r["epoch"], 100 * r["val"][classifier]) for r in run.history if classifier in r.get("val", {})]
        if val:
            accuracies[prefix + classifier] = ([e for e, _ in val], [v for _, v in val])
        elif (at_end := final_val_accuracy(run, classifier)) is not None:
            accuracies[prefix + f"{classifier} (at the end)"] = ([epochs[-1] if epochs else 0], [100 * at_end])
    return losses, accuracies


def learning_curves(runs: list[Run], out: Path) -> Picture | None:
    """Each block's loss and the run's validation accuracy per epoch (no accuracy panel without any; nothing before an epoch ends)."""
    losses, accuracies = learning_curve_series(runs)
    if not losses:
        return None
    pictures.save_figure(pictures.learning_curves_figure(losses, accuracies, chance_percent(runs), baseline(runs, "val_accuracy", "val")), out / PLOTS / "learning_curves.png")
    caption = "Left: each block's training loss (its own local objective). "
    caption += ("Right: validation accuracy of each run's classifier after every epoch (a single point: measured once, after training)."
                if accuracies else "No validation accuracy was measured, so there is no accuracy panel.")
    return Picture("Learning curves", f"{PLOTS}/learning_curves.png", caption)


def goodness(run: Run, out: Path, file: str) -> Picture | None:
    """Mean goodness of positives and negatives per block over training (FF runs only)."""
    if not run.history or "g_pos" not in next(iter(run.history[0]["blocks"].values())):
        return None
    series = {block: ([r["blocks"][block]["g_pos"] for r in run.history], [r["blocks"][block]["g_neg"] for r in run.history])
              for block in run.history[0]["blocks"]}
    pictures.save_figure(pictures.goodness_figure([r["epoch"] for r in run.history], series), out / PLOTS / file)
    return Picture(f"Goodness of positives vs negatives ({run.name})", f"{PLOTS}/{file}",
                   "Mean goodness of the training positives and negatives of each block, averaged over each epoch.")


def probe_by_depth(runs: list[Run], out: Path) -> Picture | None:
    """Linear-probe test accuracy of every block against its depth."""
    probes = {run.name + (" (one block: the whole network)" if len(run.summary["per_block"]) == 1 else ""):
              [None if b.get("probe_accuracy") is None else 100 * b["probe_accuracy"] for b in run.summary["per_block"]]
              for run in runs if run.summary and any(b.get("probe_accuracy") is not None for b in run.summary["per_block"])}
    if not probes:
        return None
    line = baseline(runs, "test_accuracy", "its own classifier, test")
    pictures.save_figure(pictures.probe_by_depth_figure(probes, chance_percent(runs), line), out / PLOTS / "probe_by_depth.png")
    caption = "Test accuracy of a linear classifier trained on each block's frozen output."
    if line:
        caption += f" Dashed: the {line.label}, for reference."
    return Picture("Linear probe accuracy by depth", f"{PLOTS}/probe_by_depth.png", caption)


def label_pixel_count(method, data) -> int:
    """How many leading image pixels the method overwrites with the label (supervised FF: one per class), else 0."""
    from locallearn.methods.ff_supervised import FFSupervised

    return data.num_classes if isinstance(method, FFSupervised) else 0


def model_pictures(run: Run, out: Path) -> list[Picture]:
    """Pictures that need the trained model and its data: receptive fields, negatives, goodness histograms.

    Skipped (an empty list) when the run has no checkpoint or its data is not on this machine.
    """
    from locallearn.run import restore_run

    try:
        trainer = restore_run(run.folder)
    except LocalLearnError:
        return []
    data, method, figures = trainer.data, trainer.method, []
    first = trainer.net.blocks[0]
    label_pixels = label_pixel_count(method, data)
    try:
        pictures.save_receptive_fields(out / PLOTS / "receptive_fields.png", first.layers[0], tuple(data.image_shape),
                                       label_pixels=label_pixels, title=f"First-layer receptive fields ({first.name})")
        caption = ("Weights of evenly spaced units of the first layer laid out on the image: red positive, blue negative, "
                   "each field on the scale of its own largest |weight|.")
        if label_pixels:
            caption += (f" The first {label_pixels} pixels carry the label, not the image: they are grey in the fields "
                        "and their weights are drawn on the right on their own scale.")
        figures.append(Picture("First-layer receptive fields", f"{PLOTS}/receptive_fields.png", caption))
    except ValueError:
        pass  # a first layer without a plain linear map to show
    if getattr(data, "val_x", None) is None:
        return figures  # streamed data (imagefolder): no validation images in memory to draw from
    generator = torch.Generator(device=data.val_x.device).manual_seed(0)
    if getattr(method.options, "negatives", None) == "hybrid":
        pictures.save_hybrid_examples(out / PLOTS / "hybrid_negatives.png", data.val_x[:6], generator, method.options.blurs)
        figures.append(Picture("Hybrid negatives", f"{PLOTS}/hybrid_negatives.png",
                               "Each row: a validation image, its partner, the mask (white: taken from the image) and the hybrid negative."))
    histograms = goodness_on_validation(trainer, generator)
    if histograms:
        pictures.save_figure(pictures.goodness_histograms_figure(histograms), out / PLOTS / "goodness_histograms.png")
        figures.append(Picture("Goodness at the end of training", f"{PLOTS}/goodness_histograms.png",
                               f"Each block's goodness on {next(iter(histograms.values()))[0].numel()} validation images as positives "
                               "and on the negatives the method makes of them."))
    return figures


@torch.no_grad()
def goodness_on_validation(trainer, generator: torch.Generator, count: int = 1000) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{block: (goodness of positives, goodness of negatives)} on the first validation images (FF methods; else empty)."""
    data, net = trainer.data, trainer.net
    count = min(count, data.val_x.shape[0])
    if count == 0 or not hasattr(net.blocks[0].objective, "goodness_kind"):
        return {}
    views = trainer.method.make_views(data.val_x[:count], data.val_y[:count], torch.arange(count), generator)
    if views.num_positive == views.inputs.shape[0]:
        return {}
    scores = {block.name: block.objective.score(out) for block, out in zip(net.blocks, net.forward_blocks(views.inputs))}
    return {name: (g[: views.num_positive], g[views.num_positive :]) for name, g in scores.items()}


COMPARISON = ["run", "preset", "method", "granularity", "dataset", "network", "epochs", "test acc % (classifier)", "val acc %",
              "train time", "s/epoch", "samples/s", "peak RSS MB", "probe acc % per block"]


def network(model: dict) -> str:
    """The widths that define the network: hidden units of an MLP, channels of a conv net, a ResNet's base width."""
    arch = model["arch"]
    if arch.startswith("resnet"):
        return f"{arch} width {model.get('width')}"
    widths = model.get("hidden") if arch == "mlp" else model.get("channels")
    return f"{arch} {'×'.join(map(str, widths))}" if widths else arch


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def comparison_row(run: Run) -> list[str]:
    """One row of the comparison table; a run still going shows its epochs and time so far and dashes for the rest."""
    s, c = run.summary, run.config
    seconds = s["train_seconds"] if s else sum(r["epoch_seconds"] for r in run.history)
    epochs = s["epochs"] if s else len(run.history)
    probes = ", ".join(f"{b['name']} {100 * b['probe_accuracy']:.1f}" for b in (s or {}).get("per_block", []) if b.get("probe_accuracy") is not None)
    return [run.name, (s or {}).get("preset", "–"), c["method"]["name"], c["train"]["granularity"], c["data"]["name"], network(c["model"]), str(epochs),
            f"{pct(s['test_accuracy'])} ({s['classifier']})" if s else "–", pct(s["val_accuracy"]) if s else "–",
            duration(seconds), f"{s['seconds_per_epoch']:.1f}" if s else "–",
            f"{s['samples_per_second']:.0f}" if s else "–", f"{s['peak_rss_mb']:.0f}" if s else "–", probes or "–"]


def classifier_rows(run: Run) -> list[list[str]]:
    """Test and validation accuracy of every classifier the run has (the readout included); the run's own one is marked."""
    test, val = run.final.get("test") or (run.summary or {}).get("test_accuracy_by_classifier", {}), run.final.get("val", {})
    readout = run.final.get("readout") or {}
    if not readout and (run.summary or {}).get("readout_test_accuracy") is not None:
        readout = {"test": run.summary["readout_test_accuracy"]}
    own = classifier_of(run)
    rows = [[name, pct(accuracy), pct(val.get(name))] for name, accuracy in test.items()]
    if readout:
        rows.append(["readout", pct(readout.get("test")), pct(readout.get("val"))])
    for row in rows:
        if row[0] == own:
            row[0] += " (the run's accuracy)"
    return rows


BLOCK_COLUMNS = [("block's own classifier test %", "accuracy"), ("probe test %", "probe_accuracy"),
                 ("probe val %", "probe_val_accuracy"), ("kNN test %", "knn_accuracy")]


def block_table(run: Run) -> tuple[list[str], list[list[str]]]:
    """Per block: its own classifier's, its linear probe's and its kNN's accuracy, leaving out columns no block has."""
    blocks = (run.summary or {}).get("per_block", [])
    columns = [(header, key) for header, key in BLOCK_COLUMNS if any(b.get(key) is not None for b in blocks)]
    return ["block"] + [h for h, _ in columns], [[b["name"]] + [pct(b.get(key)) for _, key in columns] for b in blocks]


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    escape = lambda v: v.replace("|", "\\|")
    return ["| " + " | ".join(map(escape, header)) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(map(escape, r)) + " |" for r in rows]


def html_table(header: list[str], rows: list[list[str]]) -> str:
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in row)
    return f"<table><tr>{cells(header, 'th')}</tr>" + "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows) + "</table>"


ACCURACY_NOTE = ("Test accuracy is measured once, after training; val is the held-out part of the training set. "
                 "readout: a linear classifier on the frozen features of the blocks the method reads out; "
                 "probe: a linear classifier on one block's frozen output; kNN: nearest neighbours in one block's output.")

DIFFERENCES_NOTE = ("From the resolved configs, which hold every key: a key that a run's architecture or method does not use "
                    "keeps its default there and does not affect that run.")

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;margin:0.5em 0 1em}"
         " td,th{border:1px solid #ccc;padding:4px 8px;text-align:left} th{background:#f4f4f4}"
         " pre{background:#f8f8f8;padding:0.8em;max-height:30em;overflow:auto} img{max-width:100%} figcaption{color:#444;max-width:60em}"
         " figure{margin:0 0 2em} .note{color:#444;max-width:60em}")


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """{dotted key: value} of a nested config (lists are values)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def config_differences(runs: list[Run]) -> list[list[str]]:
    """Rows of (dotted key, value in each run) for the config keys whose values differ between the runs (descriptions left out)."""
    flat = [flatten(run.config) for run in runs]
    keys = sorted({k for f in flat for k in f} - {"description"})
    missing = object()
    shown = lambda value: value if isinstance(value, str) else json.dumps(value)
    return [[key] + ["–" if f.get(key, missing) is missing else shown(f[key]) for f in flat]
            for key in keys if len({json.dumps(f.get(key, "–")) for f in flat}) > 1]


def write_report(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Write report.md, report.html and plots/*.png into `out` (default: the run folder itself for one run, else the current folder).

    Order: the comparison table, each run's accuracies, the plots, (for several runs) the
    config keys that differ, and last each run's resolved config.
    """
    runs = [load_run(Path(d)) for d in run_dirs]
    give_unique_names(runs)
    out = Path(out) if out is not None else (runs[0].folder if len(runs) == 1 else Path("."))
    figures = [learning_curves(runs, out)]
    for run in runs:
        figures.append(goodness(run, out, "goodness.png" if len(runs) == 1 else f"goodness-{run.name.replace('/', '-')}.png"))
    figures.append(probe_by_depth(runs, out))
    if len(runs) == 1:
        figures += model_pictures(runs[0], out)
    figures = [f for f in figures if f is not None]
    title = f"locallearn report: {runs[0].name}" if len(runs) == 1 else f"locallearn comparison of {len(runs)} runs"
    comparison = [comparison_row(run) for run in runs]

    md = [f"# {title}", "", *md_table(COMPARISON, comparison)]
    body = [f"<h1>{html.escape(title)}</h1>", html_table(COMPARISON, comparison)]
    for run in runs:
        command = (run.summary or {}).get("command")
        block_header, block_rows = block_table(run)
        md += ["", f"## Accuracies of {run.name}", ""] + ([f"`{command}`", ""] if command else [])
        md += [*md_table(["classifier", "test %", "val %"], classifier_rows(run))]
        body += [f"<h2>Accuracies of {html.escape(run.name)}</h2>"] + ([f"<p><code>{html.escape(command)}</code></p>"] if command else [])
        body += [html_table(["classifier", "test %", "val %"], classifier_rows(run))]
        if block_rows:
            md += ["", *md_table(block_header, block_rows)]
            body += [html_table(block_header, block_rows)]
    md += ["", ACCURACY_NOTE]
    body += [f"<p class='note'>{html.escape(ACCURACY_NOTE)}</p>"]
    md += ["", "## Plots"]
    body += ["<h2>Plots</h2>"]
    for f in figures:
        md += ["", f"### {f.title}", "", f"![{f.title}]({f.src})", "", f.caption]
        body += [f"<figure><h3>{html.escape(f.title)}</h3><img src='{html.escape(f.src)}' alt='{html.escape(f.title)}'>"
                 f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"]
    if len(runs) > 1:
        differences = config_differences(runs)
        header = ["config key"] + [run.name for run in runs]
        md += ["", "## Config keys that differ", "", DIFFERENCES_NOTE, "", *(md_table(header, differences) if differences else ["None."])]
        body += ["<h2>Config keys that differ</h2>", f"<p class='note'>{html.escape(DIFFERENCES_NOTE)}</p>",
                 html_table(header, differences) if differences else "<p>None.</p>"]
    md += ["", "## Resolved configs" if len(runs) > 1 else "## Resolved config"]
    body += ["<h2>Resolved configs</h2>" if len(runs) > 1 else "<h2>Resolved config</h2>"]
    for run in runs:
        md += ["", f"`{run.folder / 'config.yaml'}`", "", "```yaml", run.config_text.rstrip(), "```"]
        body += [f"<details{' open' if len(runs) == 1 else ''}><summary>{html.escape(str(run.folder / 'config.yaml'))}</summary>"
                 f"<pre>{html.escape(run.config_text)}</pre></details>"]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")
    write_text_atomic(out / "report.html", f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                      f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    return out
