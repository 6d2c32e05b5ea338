"""`locallearn report`: one run into its folder, several runs into --out.

The report holds the comparison table (one row per run), every classifier's, probe's and kNN's
accuracy, the resolved config, and plots without empty panels.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from helpers import tiny_dataset_folder
from locallearn.cli import main
from locallearn.report import Run, baseline, comparison_row, config_differences, give_unique_names, learning_curve_series, learning_curves, pct

PNG = b"\x89PNG\r\n\x1a\n"


def html_row(*cells: str) -> str:
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def test_report_of_one_run_and_a_comparison(tmp_path, capsys):
    data = tiny_dataset_folder(tmp_path)
    common = ["--data-dir", str(data), "--quiet", "data.name=mnist", "data.val_size=100", "data.download=false",
              "model.hidden=[32,32]", "train.epochs=2", "eval.probe_epochs=1"]
    assert main(["train", "ff-supervised-small", "--out", str(tmp_path / "ff"), *common]) == 0
    assert main(["train", "backprop-mlp", "--out", str(tmp_path / "bp"), *common, "train.granularity=layer"]) == 0

    assert main(["report", str(tmp_path / "ff")]) == 0
    run = tmp_path / "ff"
    for png in ("learning_curves", "goodness", "probe_by_depth", "receptive_fields", "goodness_histograms"):
        assert (run / "plots" / f"{png}.png").read_bytes().startswith(PNG)
    md, page = (run / "report.md").read_text(), (run / "report.html").read_text()
    summary = json.loads((run / "summary.json").read_text())
    final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]["final"]
    assert f"| ff | ff-supervised-small | ff-supervised | layer | mnist | mlp 32×32 | 2 | {pct(summary['test_accuracy'])} (goodness) |" in md
    assert "plots/goodness.png" in md and "plots/receptive_fields.png" in page
    assert html.escape((run / "config.yaml").read_text()) in page and "```yaml\n" + (run / "config.yaml").read_text().rstrip() in md
    for name, accuracy in summary["test_accuracy_by_classifier"].items():
        shown = name + (" (the run's accuracy)" if name == summary["classifier"] else "")
        assert html_row(shown, pct(accuracy), pct(final["val"][name])) in page
    assert html_row("readout", pct(final["readout"]["test"]), pct(final["readout"]["val"])) in page
    for block in summary["per_block"]:
        assert html_row(block["name"], pct(block["accuracy"]), pct(block["probe_accuracy"]), pct(block["probe_val_accuracy"]),
                        pct(block["knn_accuracy"])) in page

    assert main(["report", str(tmp_path / "ff"), str(tmp_path / "bp"), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ff |") or line.startswith("| bp |")]
    assert [r.split(" | ")[:7] for r in rows] == [["| ff", "ff-supervised-small", "ff-supervised", "layer", "mnist", "mlp 32×32", "2"],
                                                  ["| bp", "backprop-mlp", "backprop", "layer", "mnist", "mlp 32×32", "2"]]
    for png in ("learning_curves", "probe_by_depth", "goodness-ff"):
        assert (tmp_path / "cmp" / "plots" / f"{png}.png").read_bytes().startswith(PNG)


def test_report_on_a_non_run_or_a_corrupt_summary_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "is not a run folder" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("data: {name: mnist}\n")
    (tmp_path / "summary.json").write_text('{"preset": ')
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "summary.json is not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_runs_with_the_same_folder_name_are_told_apart_by_their_parents():
    runs = [fake_run("lr-0.1/seed0"), fake_run("lr-0.2/seed0"), fake_run("lr-0.2/seed1")]
    give_unique_names(runs)
    assert [r.name for r in runs] == ["lr-0.1/seed0", "lr-0.2/seed0", "lr-0.2/seed1"]
    single = [fake_run("lr-0.1/seed0"), fake_run("lr-0.2/seed1")]
    give_unique_names(single)
    assert [r.name for r in single] == ["seed0", "seed1"]


def fake_run(name: str, granularity: str = "layer", val: bool = True, readout_val: float | None = None, summary: dict | None = None) -> Run:
    history = [{"epoch": e, "blocks": {"layer1": {"loss": 1.0 / e}}, "epoch_seconds": 2.0, **({"val": {"goodness": 0.5 + e / 10}} if val else {})}
               for e in (1, 2)]
    config = {"method": {"name": "ff"}, "train": {"granularity": granularity}, "data": {"name": "mnist"}, "model": {"arch": "mlp", "hidden": [8]}}
    final = {"readout": {"val": readout_val, "test": readout_val}} if readout_val is not None else {}
    return Run(Path(name), config, history, summary, final)


def test_accuracy_series_never_make_an_empty_panel():
    losses, accuracies = learning_curve_series([fake_run("supervised")])
    assert losses == {"layer1": ([1, 2], [1.0, 0.5])} and accuracies == {"goodness": ([1, 2], [60.0, 70.0])}
    assert learning_curve_series([fake_run("no-val", val=False)])[1] == {}
    unsupervised = fake_run("unsupervised", val=False, readout_val=0.8, summary={"classifier": "readout"})
    assert learning_curve_series([unsupervised])[1] == {"readout (at the end)": ([2], [80.0])}
    validated_once = fake_run("eval_every=0", val=False, summary={"classifier": "goodness"})
    validated_once.final = {"val": {"goodness": 0.75}}
    assert learning_curve_series([validated_once])[1] == {"goodness (at the end)": ([2], [75.0])}


def test_a_run_before_its_first_epoch_has_no_learning_curves(tmp_path):
    fresh = fake_run("fresh")
    fresh.history = []
    assert learning_curves([fresh], tmp_path) is None and not (tmp_path / "plots").exists()


def test_baseline_is_the_end_to_end_run_else_the_best_and_none_for_one_run():
    local = fake_run("local", summary={"classifier": "goodness", "test_accuracy": 0.9})
    e2e = fake_run("e2e", granularity="end-to-end", summary={"classifier": "net", "test_accuracy": 0.8})
    other = fake_run("other", summary={"classifier": "goodness", "test_accuracy": 0.7})
    assert baseline([local, e2e], "test_accuracy", "test").percent == 80.0
    assert baseline([local, other], "test_accuracy", "test").label == "best run local (test)"
    assert baseline([local], "test_accuracy", "test") is None


def test_a_running_run_has_its_epochs_and_time_so_far_and_dashes():
    row = comparison_row(fake_run("going"))
    assert row[:8] == ["going", "–", "ff", "layer", "mnist", "mlp 8", "2", "–"] and row[9] == "4.0 s"


def test_config_differences_list_only_the_keys_that_differ():
    a, b = fake_run("a"), fake_run("b", granularity="end-to-end")
    b.config["model"]["hidden"] = [8, 8]
    b.config["optim"] = {"lr": 0.1}
    assert config_differences([a, b]) == [["model.hidden", "[8]", "[8, 8]"], ["optim.lr", "–", "0.1"], ["train.granularity", "layer", "end-to-end"]]


def test_a_run_without_classifier_or_validation_split_has_dashes_not_fake_zeros():
    """`eval.probes=false` leaves an unsupervised run no accuracy, `data.val_size=0` no validation: dashes, not 0.00."""
    summary = {"preset": "ff-unsupervised-small", "epochs": 1, "test_accuracy": None, "val_accuracy": None, "classifier": "readout",
               "train_seconds": 150.0, "seconds_per_epoch": 150.0, "samples_per_second": 400.0, "peak_rss_mb": 700.0,
               "per_block": [{"name": "layer1", "accuracy": None}]}
    row = comparison_row(fake_run("unsupervised", val=False, summary=summary))
    assert row[7:] == ["– (readout)", "–", "2.5 min", "150.0", "400", "700", "–"]
