"""A study's report from its result records: mean ± std over seeds as a Markdown and an HTML table, and plots against K.

K is the number of blocks a cell's network was cut into (its summary's `per_block`), so
K = 1 is end-to-end backprop. Cells are grouped into lines: one per variant (objective)
and per value of every other grid key except `train.granularity`; the seeds of a point
are averaged. Plots: test accuracy (error bars: std over seeds), peak memory and time per
epoch, each against K on a log2 axis.
"""

from __future__ import annotations

import html
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from locallearn.atomic import write_atomic, write_text_atomic  # noqa: E402
from locallearn.errors import RunError  # noqa: E402
from locallearn.records import markdown_table, read_record  # noqa: E402

COLUMNS = [("objective", "line"), ("K (blocks)", "k"), ("granularity", "granularity"), ("seeds", "seeds"),
           ("test accuracy %", "test"), ("vs K=1 (points)", "gap"), ("val accuracy %", "val"),
           ("s / epoch", "seconds_per_epoch"), ("peak RSS MB", "peak_rss_mb")]


def _line_label(cell) -> str:
    others = [f"{key}={value}" for key, value in cell.point.items() if key != "train.granularity"]
    return " ".join([cell.variant or cell.preset, *others])


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = _mean_std([v * scale for v in values])
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def aggregate(study, records: Path) -> tuple[list[dict], list[str]]:
    """One row per (line, K) with the seeds' numbers, and the names of cells that have no record yet."""
    groups: dict[tuple[str, int], list[dict]] = {}
    missing = []
    for cell in study.cells:
        path = records / f"{cell.name}.json"
        if not path.is_file():
            missing.append(cell.name)
            continue
        record = read_record(path)
        summary = record["summary"]
        groups.setdefault((_line_label(cell), len(summary.get("per_block") or [None])), []).append(record)
    rows = []
    for (line, k), group in groups.items():
        summaries = [r["summary"] for r in group]
        test = [s["test_accuracy"] for s in summaries if s.get("test_accuracy") is not None]
        val = [s["val_accuracy"] for s in summaries if s.get("val_accuracy") is not None]
        rows.append({"line": line, "k": k, "granularity": summaries[0].get("granularity"), "seeds": len(group),
                     "test_values": test, "test": _pm(test, 100) if test else None, "val": _pm(val, 100) if val else None,
                     "seconds_per_epoch": _pm([s["seconds_per_epoch"] for s in summaries], 1, 1),
                     "peak_rss_mb": _pm([s["peak_rss_mb"] for s in summaries], 1, 0),
                     "memory_values": [s["peak_rss_mb"] for s in summaries], "time_values": [s["seconds_per_epoch"] for s in summaries]})
    order = {cell_line: i for i, cell_line in enumerate(dict.fromkeys(_line_label(c) for c in study.cells))}
    rows.sort(key=lambda r: (order[r["line"]], r["k"]))
    end_to_end = {r["line"]: statistics.fmean(r["test_values"]) for r in rows if r["k"] == 1 and r["test_values"]}
    for row in rows:
        if row["k"] != 1 and row["line"] in end_to_end and row["test_values"]:
            row["gap"] = f"{100 * (statistics.fmean(row['test_values']) - end_to_end[row['line']]):+.2f}"
    return rows, missing


def plot_against_k(rows: list[dict], values: str, scale: float, ylabel: str, title: str, path: Path) -> None:
    """One line per objective of `values` (mean, std error bars) against K; K = 1 (end to end) drawn as a star."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ks = sorted({r["k"] for r in rows})
    for line in dict.fromkeys(r["line"] for r in rows):
        points = [r for r in rows if r["line"] == line and r[values]]
        stats = [_mean_std([v * scale for v in r[values]]) for r in points]
        drawn = ax.errorbar([r["k"] for r in points], [m for m, _ in stats], yerr=[s or 0.0 for _, s in stats],
                            marker="o", capsize=3, label=line)
        ends = [(r["k"], m) for r, (m, _) in zip(points, stats) if r["k"] == 1]
        if ends:
            ax.plot(*zip(*ends), marker="*", markersize=14, color=drawn[0].get_color(), linestyle="none")
    if 1 in ks:
        ax.plot([], [], marker="*", markersize=12, color="grey", linestyle="none", label="end to end (K = 1)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [f"{k}\n(end to end)" if k == 1 else str(k) for k in ks])
    ax.minorticks_off()
    ax.set(xlabel="K: blocks the network is cut into", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_study_report(study, records: Path) -> Path:
    """`report.md`, `report.html` and three PNGs in the records folder; returns the Markdown file's path."""
    records = Path(records)
    rows, missing = aggregate(study, records)
    if not rows:
        raise RunError(f"no result records of this study in {records}")
    plots = [("accuracy.png", "test_values", 100.0, "test accuracy %", "Accuracy against number of blocks"),
             ("memory.png", "memory_values", 1.0, "peak RSS of the run (MB)", "Peak memory against number of blocks"),
             ("time.png", "time_values", 1.0, "seconds per epoch", "Time per epoch against number of blocks")]
    for name, values, scale, ylabel, title in plots:
        plot_against_k(rows, values, scale, ylabel, title, records / name)
    table = markdown_table(rows, COLUMNS)
    note = (f"Generated by `locallearn study --report` from the {sum(r['seeds'] for r in rows)} result records in this folder; "
            "mean ± std over seeds (std only with two seeds or more). K = 1 is end-to-end backprop; "
            "'vs K=1' is the difference of mean test accuracy from the same objective's end-to-end run. "
            "Peak memory is the run's peak resident memory (training and evaluation); times are wall-clock seconds on the "
            "machine each record names and depend on what else it was running.")
    if missing:
        note += f" Not run yet: {len(missing)} cell(s) ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})."
    markdown = [f"# Study {study.name}", "", study.description, "", note, "", table]
    markdown += [f"![{title}]({name})" for name, _, _, _, title in plots]
    md_path = records / "report.md"
    write_text_atomic(md_path, "\n".join(markdown) + "\n")
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(key) if r.get(key) is not None else '–'))}</td>" for _, key in COLUMNS) + "</tr>"
                   for r in rows)
    images = "".join(f'<p><img src="{name}" alt="{html.escape(title)}"></p>' for name, _, _, _, title in plots)
    write_text_atomic(records / "report.html",
                      f"<!doctype html><html><head><meta charset='utf-8'><title>Study {html.escape(study.name)}</title>"
                      "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
                      "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
                      f"<h1>Study {html.escape(study.name)}</h1><p>{html.escape(study.description)}</p><p>{html.escape(note)}</p>"
                      f"<table><tr>{head}</tr>{body}</table>{images}</body></html>\n")
    return md_path
