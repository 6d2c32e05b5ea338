"""`locallearn report`: one run into its folder, several runs into --out."""

from __future__ import annotations

from helpers import tiny_dataset_folder
from locallearn.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


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
    md = (run / "report.md").read_text()
    assert "| ff | ff-supervised | layer | mnist | 2 |" in md and "plots/goodness.png" in md
    assert "<table>" in (run / "report.html").read_text()

    assert main(["report", str(tmp_path / "ff"), str(tmp_path / "bp"), "--out", str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| ff | ff-supervised |" in md and "| bp | backprop | layer |" in md
    assert (tmp_path / "cmp" / "plots" / "probe_by_depth.png").read_bytes().startswith(PNG)


def test_report_on_a_non_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "is not a run folder" in capsys.readouterr().err
