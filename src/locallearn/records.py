"""Result records: a published number together with everything needed to trace and reproduce it.

A record is one small JSON file (kept in the repository under `results/<study>/<name>.json`):

    {"record_version": 1, "name": ..., "source": "run" | "transcribed",
     "command": "locallearn train ...", "code_version": {"commit": ..., "dirty": ...},
     "machine": {...}, "config": {... resolved config ...}, "summary": {... summary.json ...},
     "note": "..."}

`source: run` records are made from a finished run folder (`record_from_run`);
`source: transcribed` records hold numbers copied from an older log whose run folder is
gone (config may be null and the summary partial); tables say which is which. Tables
and plots in the docs are generated from records (`markdown_table`), never typed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Callable, Sequence

from locallearn.atomic import write_json_atomic
from locallearn.config import load_yaml
from locallearn.errors import RunError

RECORD_VERSION = 1
REQUIRED_KEYS = ("record_version", "name", "source", "command", "code_version", "machine", "config", "summary")
SOURCES = ("run", "transcribed")


def code_version(where: str | os.PathLike | None = None) -> dict:
    """The git commit of the source tree holding this package (or `where`) and whether it has uncommitted changes; nulls outside git."""
    folder = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def machine() -> dict:
    """The machine a run ran on: CPU model and cores, GPU model (if any), OS, Python and torch versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__}


def record_from_run(run_dir: str | os.PathLike, name: str | None = None, command: str | None = None, note: str = "") -> dict:
    """The record of a finished run folder: its summary.json and config.yaml, with the command and code version the run saved."""
    run_dir = Path(run_dir)
    summary_path, config_path = run_dir / "summary.json", run_dir / "config.yaml"
    if not summary_path.is_file() or not config_path.is_file():
        raise RunError(f"{run_dir} is not a finished run (summary.json or config.yaml is missing)")
    summary = json.loads(summary_path.read_text())
    command = command or summary.get("command")
    if not command:
        raise RunError(f"{run_dir}: the summary names no command; give the command that made the run")
    return {
        "record_version": RECORD_VERSION,
        "name": name or run_dir.name,
        "source": "run",
        "command": command,
        "code_version": summary.get("code_version") or {"commit": None, "dirty": None},
        "machine": summary.get("machine") or {},
        "config": load_yaml(config_path.read_text()),
        "summary": summary,
        "note": note,
    }


def check_record(record: Any, where: str) -> dict:
    """`record` itself if it is a valid record, else a `RunError` saying what is wrong with the one in `where`."""
    if not isinstance(record, dict):
        raise RunError(f"{where}: a result record must be a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise RunError(f"{where}: the result record lacks {', '.join(missing)}")
    if record["record_version"] != RECORD_VERSION:
        raise RunError(f"{where}: record_version {record['record_version']!r} is not the supported {RECORD_VERSION}")
    if record["source"] not in SOURCES:
        raise RunError(f"{where}: source {record['source']!r} is not one of {', '.join(SOURCES)}")
    if not isinstance(record["summary"], dict):
        raise RunError(f"{where}: summary must be a JSON object")
    return record


def write_record(path: str | os.PathLike, record: dict) -> None:
    """Write `record` to `path` atomically (creating its folder)."""
    path = Path(path)
    check_record(record, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)


def read_record(path: str | os.PathLike) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read result record {path}: {err}") from None
    return check_record(record, str(path))


def load_records(folder: str | os.PathLike) -> list[dict]:
    """Every record in `folder` (recursively), sorted by path."""
    return [read_record(path) for path in sorted(Path(folder).rglob("*.json"))]


def lookup(record: dict, dotted: str) -> Any:
    """The value at a dotted path of a record (`summary.test_accuracy`, `config.train.granularity`), or None."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


Column = tuple[str, str | Callable[[dict], Any]]


def markdown_table(records: Sequence[dict], columns: Sequence[Column]) -> str:
    """A Markdown table with one row per record; a column is (header, dotted path or function of the record)."""
    def cell(record: dict, source) -> str:
        value = source(record) if callable(source) else lookup(record, source)
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header for header, _ in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r, source) for _, source in columns) + " |" for r in records]
    return "\n".join(lines) + "\n"


def preset_record(name: str, folder: str | os.PathLike | None = None) -> dict | None:
    """The reference record of preset `name`, `<folder>/presets/<name>.json`, or None when there is none.

    `folder` defaults to `$LOCALLEARN_RESULTS`, else the repository's `results/`.
    """
    folder = folder or os.environ.get("LOCALLEARN_RESULTS") or Path(__file__).resolve().parents[2] / "results"
    path = Path(folder) / "presets" / f"{name}.json"
    return read_record(path) if path.is_file() else None
