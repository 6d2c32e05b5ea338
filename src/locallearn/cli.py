"""The command line: `locallearn train | presets | eval`.

Every failure a user can cause or meet is one line on stderr and an exit status:
2 for a wrong command (unknown preset, key or type), 1 for a failure while running.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import signal
import sys
import time
from pathlib import Path

from locallearn.config import load_yaml

from locallearn.errors import LocalLearnError, UsageError
from locallearn.monitor import status


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def readout_setting(text: str) -> dict:
    """`EPOCHS[,LR[,WEIGHT_DECAY[,BATCH]]]` -> `fit_linear_probe` keyword arguments (only those given)."""
    keys, kinds = ("epochs", "lr", "weight_decay", "batch_size"), (int, float, float, int)
    parts = text.split(",")
    try:
        if len(parts) > 4:
            raise ValueError
        setting = {key: kind(part) for key, kind, part in zip(keys, kinds, parts)}
    except ValueError:
        raise UsageError(f"--readout-sweep {text!r}: expected EPOCHS[,LR[,WEIGHT_DECAY[,BATCH]]] (EPOCHS, BATCH integers), e.g. 30 or 50,0.001,0,256") from None
    if min(v for k, v in setting.items() if k != "weight_decay") <= 0 or setting.get("weight_decay", 0) < 0:
        raise UsageError(f"--readout-sweep {text!r}: EPOCHS, LR and BATCH must be positive, WEIGHT_DECAY not negative")
    return setting


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="locallearn", description="Train neural networks with local learning rules.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = commands.add_parser("train", help="train a preset")
    train.add_argument("preset", help="a preset name (see `locallearn presets`) or a YAML file")
    train.add_argument("--out", type=Path, help="run folder (default: runs/PRESET-TIME)")
    train.add_argument("--data-dir", help="where the dataset files are (same as data.dir=...)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, values in YAML")
    presets = commands.add_parser("presets", help="list the presets, or show one in full")
    presets.add_argument("name", nargs="?", help="a preset to show: its full description and YAML")
    evaluate = commands.add_parser("eval", help="re-evaluate a saved run on the test set")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--quiet", action="store_true", help="no progress of the evaluation's phases")
    evaluate.add_argument("--readout-sweep", action="append", type=readout_setting, metavar="EPOCHS[,LR[,WEIGHT_DECAY[,BATCH]]]",
                          help="instead, fit only the readout again at this setting (repeatable; the rest as the run's eval.probe_*) "
                               "on features computed once, into readout-sweep.json")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                          help="evaluate differently, e.g. method.skip_first=false (the weights stay those trained)")
    report = commands.add_parser("report", help="Markdown/HTML reports and plots of one run, or a comparison of several")
    report.add_argument("run_dirs", type=Path, nargs="+")
    report.add_argument("--out", type=Path, help="where a comparison goes (default: the current folder; one run: its own folder)")
    study = commands.add_parser("study", help="run a grid of runs (a study file), resumable, on several workers, and report it")
    study.add_argument("study_file", type=Path, metavar="STUDY.yaml")
    study.add_argument("--workers", type=int, default=1, help="cells run at once, each its own process (default 1)")
    study.add_argument("--out", type=Path, help="folder of the cells' run folders (default: runs/STUDY-NAME)")
    study.add_argument("--records", type=Path, help="where the cells' result records and the report go (default: OUT/records)")
    study.add_argument("--executor", choices=["local", "submitit"], default="local",
                       help="local worker processes, or one submitit job per cell (SLURM; needs locallearn[cluster])")
    study.add_argument("--report", action="store_true", help="run nothing: only write the records of the finished cells and the report")
    return parser


def cmd_train(args) -> int:
    status(not args.quiet, "starting: importing PyTorch…")  # takes seconds on a busy machine
    from locallearn.config import load_config
    from locallearn.run import train
    from locallearn.rundir import finished_summary, resume_config

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.dir={json.dumps(args.data_dir)}")
    if args.quiet:
        overrides.append("logging.progress=false")
    preset = Path(args.preset).stem
    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs --out RUN_DIR (the folder of the run to continue)")
        config = resume_config(args.out, preset, overrides)
        done = finished_summary(args.out, config.train.epochs)
        if done is not None:
            print(f"the run in {args.out} is already finished ({done['epochs']} epochs, {accuracies(done)}); nothing to do "
                  f"(to train it longer: --resume train.epochs=N)")
            return 0
    else:
        config = load_config(args.preset, overrides)
    if args.out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("under torchrun give --out RUN_DIR: every rank must use the same run folder")
    out = args.out or Path("runs") / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = shlex.join(["locallearn", *(args.argv if args.argv is not None else sys.argv[1:])])
    summary = train(config, preset, out, resume=args.resume, command=command)
    if summary is None:  # a rank other than 0: rank 0 reports
        return 0
    print(f"{accuracies(summary)} train_seconds={summary['train_seconds']:.1f} run={out}")
    return 0


def accuracies(summary: dict) -> str:
    """`test_accuracy=0.8749 val_accuracy=0.8712` of a run summary (`none` where it has none)."""
    test, val = (f"{a:.4f}" if a is not None else "none" for a in (summary["test_accuracy"], summary["val_accuracy"]))
    return f"test_accuracy={test} val_accuracy={val}"


def cmd_presets(args) -> int:
    from locallearn.config import preset_names, preset_text
    from locallearn.records import preset_record

    if args.name:
        text = preset_text(args.name)
        tree = load_yaml(text) or {}
        print(f"{args.name}: {tree.get('summary', '')}\n\n{tree.get('description', '')}\n\nmeasured: {measured(preset_record(args.name))}\n")
        print(text.rstrip("\n"))
        return 0
    names = preset_names()
    rows = [("PRESET", "WHAT IT IS (more: locallearn presets NAME)", "TEST ACC", "TRAINING ON 2 CORES")]
    for name in names:
        tree = load_yaml(preset_text(name)) or {}
        record = preset_record(name)
        rows.append((name, tree.get("summary") or tree.get("description", "")[:80], *measured_cells(record)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(f"{row[0]:{widths[0]}s}  {row[1]:{widths[1]}s}  {row[2]:>{widths[2]}s}  {row[3]}")
    return 0


def measured_cells(record: dict | None) -> tuple[str, str]:
    """A preset's measured test accuracy (`87.49%`) and training time (`1m54s`) from its record; `–` where not measured."""
    from locallearn.monitor import format_duration
    from locallearn.records import lookup

    accuracy, seconds = (lookup(record, key) if record else None for key in ("summary.test_accuracy", "summary.train_seconds"))
    return (f"{100 * accuracy:.2f}%" if accuracy is not None else "–", format_duration(seconds) if seconds is not None else "–")


def measured(record: dict | None) -> str:
    """One line of what a preset's record says: test accuracy, training time, machine."""
    if record is None:
        return "not yet (no record in results/presets/)"
    accuracy, seconds = measured_cells(record)
    cores = (record.get("machine") or {}).get("cores")
    where = f" on {cores} CPU cores" if cores else ""
    return f"test accuracy {accuracy}, training {seconds}{where} ({record['source']}; command: {record['command']})"


def cmd_eval(args) -> int:
    status(not args.quiet, "starting: importing PyTorch…")
    from locallearn.run import evaluate_run, sweep_run_readout

    if args.readout_sweep:
        for row in sweep_run_readout(args.run_dir, args.readout_sweep, args.overrides, progress=not args.quiet)["readout_sweep"]:
            print(json.dumps(row))
        return 0
    report = evaluate_run(args.run_dir, args.overrides, progress=not args.quiet)
    print(json.dumps({k: report[k] for k in ("epoch", "val", "test")} | {"readout": report.get("readout")}))
    return 0


def cmd_report(args) -> int:
    from locallearn.report import write_report

    out = write_report(args.run_dirs, args.out)
    print(f"wrote {out / 'report.md'} and {out / 'report.html'}")
    return 0


def cmd_study(args) -> int:
    from locallearn.study import study_main

    return study_main(args.study_file, args.out, args.records, args.workers, args.executor, args.report)


COMMANDS = {"train": cmd_train, "presets": cmd_presets, "eval": cmd_eval, "report": cmd_report, "study": cmd_study}


def main(argv: list[str] | None = None) -> int:
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra and (args.command not in ("train", "eval") or any(a.startswith("-") for a in extra)):
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        if extra:
            args.overrides = [*args.overrides, *extra]
        args.argv = argv
        return COMMANDS[args.command](args)
    except LocalLearnError as err:
        print(f"locallearn: error: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("locallearn: interrupted; the last completed epoch is checkpointed (continue with --resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not stdout_is_closed():
            raise  # another pipe broke: not ours to hide
        # whoever read stdout stopped early (`locallearn presets | head -3`): end quietly, as a
        # process killed by SIGPIPE would, and keep the final flush at exit from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def stdout_is_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def run() -> None:
    """The console entry point: exit with `main`'s status.

    A torchrun rank ends with `os._exit` once its output is flushed: at interpreter
    teardown, gloo's threads can still hold work objects whose destruction aborts the
    process ("terminate called without an active exception", status -6) after the run
    has finished. Everything the run writes is already on disk, atomically, by then.
    """
    status = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
