"""Result records: made from a finished run with its command, code version and machine; bad records are one-line errors."""

from __future__ import annotations

import json

import pytest

from helpers import TINY
from locallearn.cli import main
from locallearn.errors import RunError
from locallearn.records import load_records, markdown_table, record_from_run, write_record


def test_a_record_holds_the_run_its_command_and_its_code_version(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = ["train", "ff-supervised-small", "--out", str(out), "--data-dir", str(data_dir), "--quiet", *TINY, "train.epochs=1", "eval.probes=false", "eval.knn=false"]
    assert main(argv) == 0
    record = record_from_run(out, name="tiny")
    assert record["command"].split()[:3] == ["locallearn", "train", "ff-supervised-small"] and "train.epochs=1" in record["command"]
    assert set(record["code_version"]) == {"commit", "dirty"}
    assert record["machine"]["cores"] >= 1 and record["config"]["train"]["epochs"] == 1
    assert record["summary"]["test_accuracy"] == json.loads((out / "summary.json").read_text())["test_accuracy"]
    write_record(tmp_path / "records" / "tiny.json", record)
    assert load_records(tmp_path / "records") == [record]
    table = markdown_table([record], [("run", "name"), ("test", "summary.test_accuracy"), ("missing", "summary.nope")])
    assert table.splitlines()[2].startswith("| tiny | 0.") and table.splitlines()[2].endswith("| – |")


def test_a_record_with_a_missing_key_or_another_version_is_a_one_line_error(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"record_version": 1, "name": "a"}))
    with pytest.raises(RunError, match="lacks source, command"):
        load_records(tmp_path)
    good = {"record_version": 2, "name": "a", "source": "run", "command": "x", "code_version": {}, "machine": {}, "config": None, "summary": {}}
    (tmp_path / "a.json").write_text(json.dumps(good))
    with pytest.raises(RunError, match="record_version 2 is not the supported 1"):
        load_records(tmp_path)
    with pytest.raises(RunError, match="not a finished run"):
        record_from_run(tmp_path)
