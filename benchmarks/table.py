"""Print a Markdown results table from finished run folders (their summary.json and config.yaml).

    python benchmarks/table.py runs/bench/*
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from locallearn.report import pct


def widths(model: dict) -> str:
    """The widths that define the network: hidden units of an MLP, channels of a conv net, a ResNet's base width."""
    if model["arch"].startswith("resnet"):
        return f"width {model['width']}"
    return "×".join(map(str, model["hidden"] if model["arch"] == "mlp" else model["channels"]))


def row(run: Path) -> str:
    s = json.loads((run / "summary.json").read_text())
    c = yaml.safe_load((run / "config.yaml").read_text())
    blocks = ", ".join(f"{b['name']} {100 * b['probe_accuracy']:.1f}" for b in s["per_block"] if b.get("probe_accuracy") is not None)
    return (f"| {s['preset']} | {c['model']['arch']} {widths(c['model'])} | {s['epochs']} | {pct(s['test_accuracy'])} "
            f"({s['classifier']}) | {pct(s['val_accuracy'])} | {s['train_seconds'] / 60:.1f} min | {s['seconds_per_epoch']:.1f} s "
            f"| {s['samples_per_second']:.0f} | {s['peak_rss_mb']:.0f} MB | {blocks} |")


if __name__ == "__main__":
    print("| preset | network | epochs | test acc % | val acc % | train time | s/epoch | samples/s | peak RSS | probe acc % per block |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
