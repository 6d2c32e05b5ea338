"""`locallearn study STUDY.yaml`: a grid of ordinary training runs, resumable, on several workers, with one report.

A study file:

    name: granularity-quick            # optional (default: the file's name); names the records' folder
    description: what the study asks
    preset: greedy-supervised-deep     # the base preset of every cell
    overrides: {data.train_subset: 5000, train.threads: 1}    # given to every cell
    variants:                          # optional: named sets of overrides, one line per variant in the report;
      supervised-heads: {}             # a variant may name another `preset`
      vicreg: {preset: blockwise-vicreg, model.channels: [32, 64]}
    grid:                              # every combination of these values is a cell
      train.granularity: [end-to-end, block:2, block:4]
    seeds: [0, 1]                      # train.seed of each cell (default [0])
    executor_parameters: {}            # only for --executor submitit: AutoExecutor.update_parameters(...)

Every cell is `locallearn train PRESET --out OUT/CELL --quiet KEY=VALUE...` run as its own
process (so its peak memory is its own), and is recorded as that command. A finished cell
(summary.json) is never run again; an interrupted one continues from its checkpoint
(`--resume`). A worker claims a cell with a lock file `OUT/CELL.lock` created with
O_CREAT|O_EXCL that holds the pid of the process training it; a lock whose process is dead
is stale and is taken over. A cell that fails leaves `OUT/CELL.failed` (its error) and the
others go on. Each attempt's output is appended to `OUT/CELL.log`.
"""

from __future__ import annotations

import itertools
import shlex
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from locallearn.atomic import write_text_atomic
from locallearn.config import load_config, load_yaml
from locallearn.errors import LocalLearnError, RunError, UsageError
from locallearn.records import record_from_run, write_record
from locallearn.loop import Interrupted

STUDY_KEYS = ("name", "description", "preset", "overrides", "variants", "grid", "seeds", "executor_parameters")


@dataclass
class Cell:
    """One run of the study: a preset, its overrides (`KEY=VALUE`, values as JSON) and where they came from."""

    name: str
    preset: str
    overrides: list[str]
    variant: str | None
    point: dict = field(default_factory=dict)
    seed: int = 0

    def train_args(self, out: Path) -> list[str]:
        """The arguments of `locallearn` that run this cell."""
        return ["train", self.preset, "--out", str(out / self.name), "--quiet", *self.overrides]

    def command(self, out: Path) -> str:
        return shlex.join(["locallearn", *self.train_args(out)])


@dataclass
class Study:
    name: str
    description: str
    cells: list[Cell]
    executor_parameters: dict


def _overrides(mapping: dict) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in mapping.items()]


def _slug(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


def load_study(path: str | os.PathLike) -> Study:
    """Read and validate a study file: every cell's config is built (and so checked) before anything runs."""
    path = Path(path)
    try:
        spec = load_yaml(path.read_text())
    except OSError as err:
        raise UsageError(f"cannot read study file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: a study file must be a YAML mapping with keys {', '.join(STUDY_KEYS)}")
    unknown = sorted(set(spec) - set(STUDY_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r} in the study file; valid keys: {', '.join(STUDY_KEYS)}")

    def mapping(key: str) -> dict:
        value = spec.get(key) or {}
        if not isinstance(value, dict):
            raise UsageError(f"{path}: {key!r} must be a mapping, got {value!r}")
        return value

    preset = spec.get("preset")
    if not isinstance(preset, str):
        raise UsageError(f"{path}: 'preset' must name the base preset of every cell (see `locallearn presets`)")
    common, grid, variants = mapping("overrides"), mapping("grid"), mapping("variants") or {None: {}}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{path}: grid key {key!r} needs a non-empty list of values, got {values!r}")
    seeds = spec.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)):
        raise UsageError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    if not grid and len(variants) == 1 and len(seeds) == 1:
        raise UsageError(f"{path}: the grid is empty: give 'grid' (key: [values]), 'variants' or several 'seeds'")
    cells = []
    for variant, extra in variants.items():
        if not isinstance(extra, dict):
            raise UsageError(f"{path}: variant {variant!r} must be a mapping of overrides, got {extra!r}")
        extra = dict(extra)
        cell_preset = _resolve_preset(extra.pop("preset", preset), path.parent)
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            for seed in seeds:
                parts = [str(variant)] if variant is not None else []
                parts += [f"{key.rsplit('.', 1)[-1]}-{_slug(value)}" for key, value in point.items()] + [f"seed-{seed}"]
                cells.append(Cell("_".join(parts), cell_preset, _overrides({**common, **extra, **point, "train.seed": seed}),
                                  variant, point, seed))
    names = [c.name for c in cells]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash:
        raise UsageError(f"{path}: two cells would share the folder {clash!r}; make the grid values differ in letters or digits")
    for cell in cells:
        try:
            load_config(cell.preset, cell.overrides)
        except UsageError as err:
            raise UsageError(f"{path}: cell {cell.name}: {err}") from None
    parameters = mapping("executor_parameters")
    return Study(str(spec.get("name") or path.stem), str(spec.get("description", "")), cells, parameters)


def _resolve_preset(preset, folder: Path) -> str:
    """A preset name as is; a YAML file's path relative to the study file's folder."""
    if not isinstance(preset, str):
        raise UsageError(f"preset must be a preset name or a YAML file, got {preset!r}")
    if preset.endswith((".yaml", ".yml")) and not Path(preset).is_absolute():
        return str(folder / preset)
    return preset


# ---- claiming cells ---------------------------------------------------------------------------


def _lock_text(pid: int) -> str:
    return json.dumps({"host": socket.gethostname(), "pid": pid, "nonce": uuid.uuid4().hex})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet still answers signal 0
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _holder_alive(text: str, path: Path) -> bool:
    """Whether the process named in a lock still runs (a lock from another host counts as alive; so does a fresh, half-written one)."""
    try:
        holder = json.loads(text)
        host, pid = holder["host"], int(holder["pid"])
    except (ValueError, KeyError, TypeError):
        try:
            return time.time() - path.stat().st_mtime < 30
        except OSError:
            return False
    return host != socket.gethostname() or _alive(pid)


def claim(path: Path) -> bool:
    """Create the lock file `path` (O_CREAT|O_EXCL) holding this process's pid; take over a stale one. False if another holds it."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _break_stale(path):
                return False
            continue
        with os.fdopen(fd, "w") as f:
            f.write(_lock_text(os.getpid()))
        return True
    return False


def _break_stale(path: Path) -> bool:
    """Remove `path` if its holder is dead. Moved aside first, so two workers breaking it at once cannot remove a fresh lock."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return True
    if _holder_alive(text, path):
        return False
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{threading.get_ident()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    if aside.read_text() == text:
        aside.unlink()
        return True
    try:  # another worker had already replaced it with its own, live lock: put that one back
        os.link(aside, path)
    except FileExistsError:
        pass
    aside.unlink()
    return False


# ---- running cells ----------------------------------------------------------------------------


def is_done(out: Path, cell: Cell) -> bool:
    return (out / cell.name / "summary.json").is_file()


def write_cell_record(out: Path, cell: Cell, records: Path) -> None:
    """The result record of a finished cell, as `records/<cell>.json` (kept if already there)."""
    path = records / f"{cell.name}.json"
    if path.exists():
        return
    where = ", ".join([*([f"variant {cell.variant}"] if cell.variant else []), *(f"{k}={v}" for k, v in cell.point.items()), f"seed {cell.seed}"])
    write_record(path, record_from_run(out / cell.name, cell.name, cell.command(out), note=f"study cell: {where}"))


def run_cell(out: Path, cell: Cell, records: Path, stop: threading.Event | None = None) -> str:
    """Claim, run (or resume) and record one cell: 'done', 'was done' (by another), 'busy' (another holds it),
    'stopped' (the study was interrupted) or 'failed: <why>'."""
    if is_done(out, cell):
        write_cell_record(out, cell, records)
        return "was done"
    lock = out / f"{cell.name}.lock"
    if not claim(lock):
        return "busy"
    try:
        if is_done(out, cell):  # finished by another worker between our look and our claim
            write_cell_record(out, cell, records)
            return "was done"
        (out / f"{cell.name}.failed").unlink(missing_ok=True)
        resume = ["--resume"] if (out / cell.name / "checkpoint.json").is_file() else []
        status, last_line = _train(out, cell, lock, resume, stop)
        if status != 0 and stop is not None and stop.is_set():
            return "stopped"  # asked to stop: it saved a checkpoint and the next run resumes it
        if status != 0:
            why = f"killed by {signal.Signals(-status).name}" if status < 0 else last_line or f"exit status {status}"
            write_text_atomic(out / f"{cell.name}.failed", why + "\n")
            return f"failed: {why}"
        write_cell_record(out, cell, records)
        return "done"
    finally:
        lock.unlink(missing_ok=True)


def _train(out: Path, cell: Cell, lock: Path, resume: list[str], stop: threading.Event | None) -> tuple[int, str]:
    """Run `locallearn train` for the cell as a child process whose pid the lock then holds; (exit status, last line of its output)."""
    import locallearn

    env = dict(os.environ)  # the child imports this very copy of locallearn
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(locallearn.__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    log_path = out / f"{cell.name}.log"
    with open(log_path, "a") as log:
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {cell.command(out)}{' --resume' if resume else ''}\n")
        log.flush()
        start = log.tell()
        child = subprocess.Popen([sys.executable, "-m", "locallearn", *cell.train_args(out), *resume],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        write_text_atomic(lock, _lock_text(child.pid))
        while True:
            try:
                status = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop.is_set():
                    child.send_signal(signal.SIGTERM)  # it checkpoints and stops
    with open(log_path) as log:
        log.seek(start)
        lines = [line.strip() for line in log if line.strip()]
    return status, lines[-1].removeprefix("locallearn: error: ") if lines else ""


# ---- the study as a whole ---------------------------------------------------------------------


class Progress:
    """Cells done / running / failed and an ETA, one line on stderr whenever they change."""

    def __init__(self, study: Study, out: Path, workers: int):
        self.study, self.out, self.workers = study, out, workers
        self.start = time.monotonic()
        self.finished_here: list[float] = []  # durations of the cells run by this invocation
        self.last = ""

    def show(self, failed: int, final: bool = False) -> None:
        total = len(self.study.cells)
        done = sum(is_done(self.out, c) for c in self.study.cells)
        left = total - done - failed
        running = sum(not is_done(self.out, c) and not _lockable(self.out / f"{c.name}.lock") for c in self.study.cells)  # by any process
        elapsed = time.monotonic() - self.start
        if self.finished_here and left:
            eta = f"ETA {_duration(sum(self.finished_here) / len(self.finished_here) * left / max(min(self.workers, left), 1))}"
        else:
            eta = "ETA after the first cell" if left else "finished"
        line = f"study {self.study.name}: {done}/{total} done, {running} running, {failed} failed; {_duration(elapsed)} elapsed, {eta}"
        if line.split(";")[0] != self.last.split(";")[0] or final:
            print(line, file=sys.stderr, flush=True)
        self.last = line


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def run_study(study: Study, out: Path, records: Path, workers: int = 1, executor: str = "local") -> list[tuple[Cell, str]]:
    """Run every unfinished cell; returns (cell, why) for each cell that failed. Waits for cells that other processes hold."""
    out.mkdir(parents=True, exist_ok=True)
    for cell in study.cells:
        if is_done(out, cell):
            write_cell_record(out, cell, records)
    if executor == "submitit":
        return _run_submitit(study, out, records)
    pending = [c for c in study.cells if not is_done(out, c)]
    failed: list[tuple[Cell, str]] = []
    running: set[str] = set()
    guard, stop = threading.Lock(), threading.Event()
    progress = Progress(study, out, workers)

    def next_cell() -> Cell | None:
        """A cell nobody runs, or None when all are finished or failed here; waits while others hold the rest."""
        while not stop.is_set():
            with guard:
                left = [c for c in pending if c.name not in running]
                if not left:
                    return None
                for cell in left:
                    if not (out / f"{cell.name}.lock").exists() or _lockable(out / f"{cell.name}.lock"):
                        running.add(cell.name)
                        return cell
            time.sleep(1.0)  # every cell left is held by another process
        return None

    def worker() -> None:
        while (cell := next_cell()) is not None:
            started = time.monotonic()
            try:
                outcome = run_cell(out, cell, records, stop)
            except (OSError, LocalLearnError) as err:  # e.g. its record could not be written: this cell fails, the others go on
                outcome = f"failed: {err}"
            with guard:
                running.discard(cell.name)
                if outcome == "busy":
                    continue  # lost a race for it: look again later
                pending.remove(cell)
                if outcome == "done":
                    progress.finished_here.append(time.monotonic() - started)  # for the ETA
                elif outcome not in ("was done", "stopped"):
                    failed.append((cell, outcome.removeprefix("failed: ")))
                    print(f"study {study.name}: cell {cell.name} {outcome}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(workers, len(pending))))]
    for thread in threads:
        thread.start()
    with _TermAsInterrupt():
        try:
            while any(t.is_alive() for t in threads):
                with guard:
                    progress.show(len(failed))
                time.sleep(0.5)
        except KeyboardInterrupt:
            stop.set()  # each child checkpoints and stops; a second Ctrl-C leaves them to the terminal's signal
            for thread in threads:
                thread.join()
            raise Interrupted(signal.SIGINT, f"study {study.name} interrupted; its running cells saved a checkpoint: "
                                             "run the same command again to continue") from None
    progress.show(len(failed), final=True)
    return failed


class _TermAsInterrupt:
    """While active (in the main thread), SIGTERM stops the study as Ctrl-C does: its cells checkpoint and stop."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _lockable(lock: Path) -> bool:
    """Whether a lock on disk is stale (its holder is dead), so the cell may be taken over."""
    try:
        return not _holder_alive(lock.read_text(), lock)
    except FileNotFoundError:
        return True


def _run_submitit(study: Study, out: Path, records: Path) -> list[tuple[Cell, str]]:
    """Each unfinished cell as a submitit job running `run_cell` (SLURM, or its local executor with executor_parameters.cluster: local)."""
    try:
        import submitit
    except ImportError:
        raise UsageError("--executor submitit needs the submitit package: pip install 'locallearn[cluster]'") from None
    parameters = dict(study.executor_parameters)
    executor = submitit.AutoExecutor(folder=out / "submitit", cluster=parameters.pop("cluster", None))
    if parameters:
        executor.update_parameters(**parameters)
    jobs = [(cell, executor.submit(run_cell, out, cell, records)) for cell in study.cells if not is_done(out, cell)]
    progress = Progress(study, out, len(jobs))
    failed: list[tuple[Cell, str]] = []
    for cell, job in jobs:
        while not job.done():
            progress.show(len(failed))
            time.sleep(1.0)
        try:
            outcome = job.result()
        except Exception as err:  # the job itself died (node lost, time limit): report it, go on
            outcome = f"failed: job {job.job_id}: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}"
        if outcome.startswith("failed") or outcome == "busy":
            failed.append((cell, outcome.removeprefix("failed: ") if outcome != "busy" else "held by another process"))
    progress.show(len(failed), final=True)
    return failed


def study_main(path: Path, out: Path | None, records: Path | None, workers: int, executor: str, report_only: bool) -> int:
    """The `locallearn study` command: run the study (with `report_only`, only record its finished cells), then write its report; 1 if a cell failed."""
    from locallearn.study_report import write_study_report

    study = load_study(path)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    out = out or Path("runs") / study.name
    records = records or out / "records"
    failed: list[tuple[Cell, str]] = []
    try:
        if report_only:
            for cell in study.cells:
                if is_done(out, cell):
                    write_cell_record(out, cell, records)
        else:
            failed = run_study(study, out, records, workers, executor)
    except OSError as err:
        raise RunError(f"study {study.name}: {err}") from None
    try:
        report = write_study_report(study, records)
    except LocalLearnError as err:
        raise RunError(f"study {study.name}: no report: {err}") from None
    print(f"study {study.name}: records in {records}, report {report}")
    for cell, why in failed:
        print(f"study {study.name}: cell {cell.name} failed: {why} (its output: {out / (cell.name + '.log')})", file=sys.stderr)
    return 1 if failed else 0
