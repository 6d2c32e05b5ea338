"""Tables for the README and the documentation, generated from the config schema, the presets and the result records.

Nobody types a result or a config key's meaning into the docs: the documentation's hook
(`docs/hooks.py`) replaces each `<!-- generated: NAME ARGS -->` line of a page by
`generate(NAME, ARGS)`, and the README's tables between `<!-- table:NAME -->` and
`<!-- /table:NAME -->` are rewritten by

    python -m locallearn.doc_tables --write    # rewrite README.md's tables from the records
    python -m locallearn.doc_tables --check    # exit 1 if README.md's tables differ from the records
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from locallearn.atomic import write_text_atomic
from locallearn.config import Config, load_config, load_yaml, preset_names, preset_text
from locallearn.methods import METHODS
from locallearn.records import load_records, markdown_table

ROOT = Path(__file__).resolve().parents[2]
README_TABLE = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)

# Each local preset beside its backprop baseline: the same network, views and epochs, one block.
BASELINES = [
    ("ff-supervised", "backprop-mlp"),
    ("greedy-supervised", "e2e-supervised"),
    ("greedy-supervised-deep", "e2e-supervised-deep"),
    ("blockwise-barlow", "e2e-barlow"),
    ("blockwise-simclr", "e2e-simclr"),
    ("blockwise-vicreg", "e2e-vicreg"),
]


# ---- the config schema -------------------------------------------------------------------

def schema_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every key of `model` as (dotted key, field), sub-sections (and `augment`-like option groups) expanded."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key, field
        section = _section_type(field.annotation)
        if section is not None and section is not Config.model_fields["method"].annotation:
            yield from schema_keys(section, key + ".")


def all_schema_keys() -> Iterator[tuple[str, FieldInfo]]:
    """The keys of the config schema and of every registered method's `method.*` options."""
    yield from schema_keys(Config)
    for name in sorted(METHODS):
        yield from schema_keys(METHODS[name].Options, "method.")


def _section_type(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin is Union:
        named = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}"
    if _section_type(annotation) is not None:
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, str) and not value:
        return '`""`'
    return f"`{value}`"


def _key_table(keys: list[tuple[str, FieldInfo]]) -> str:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, field in keys:
        lines.append(f"| `{key}` | {type_name(field.annotation)} | {default_text(field)} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def config_reference() -> str:
    """Every config key (type, default, meaning) by section, then every method's `method.*` options."""
    out = []
    top = [(k, f) for k, f in schema_keys(Config) if "." not in k and _section_type(f.annotation) is None]
    out += ["## Top level\n", _key_table(top + [("method.name", Config.model_fields["method"].annotation.model_fields["name"])])]
    for name, field in Config.model_fields.items():
        section = _section_type(field.annotation)
        if section is None or name == "method":
            continue
        out += [f"## `{name}`: {field.description[0].lower()}{field.description[1:].rstrip('.')}\n", _key_table(list(schema_keys(section, name + ".")))]
    for name in sorted(METHODS):
        options = METHODS[name].Options
        presets = [p for p in preset_names() if (load_yaml(preset_text(p)).get("method") or {}).get("name") == name]
        used = f" Presets: {', '.join(f'`{p}`' for p in presets)}." if presets else ""
        out += [f"## `method.*` of `{name}`\n", f"{(options.__doc__ or '').splitlines()[0]}{used}\n",
                _key_table(list(schema_keys(options, "method.")))]
    return "\n".join(out)


# ---- presets and records -----------------------------------------------------------------

def percent(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def label(record: dict) -> str:
    """What a record measured: its note up to the provenance that follows ` — `."""
    return record.get("note", "").split(" — ")[0] or record["name"]


def preset_records(root: Path = ROOT) -> dict[str, dict]:
    folder = root / "results" / "presets"
    return {r["name"]: r for r in load_records(folder)} if folder.is_dir() else {}


def short_description(preset: str) -> str:
    """The preset's description up to its first colon or parenthesis: a few words for a table."""
    text = load_config(preset).description
    return re.split(r":| \(", text, maxsplit=1)[0].strip()


def time_cell(record: dict | None) -> str:
    if record is None:
        return "–"
    summary, conditions = record["summary"], record["machine"].get("conditions")
    time = duration(summary.get("train_seconds"))
    if time == "–" and summary.get("seconds_per_epoch") is not None:
        time = f"{summary['seconds_per_epoch']:g} s/epoch"
    epochs = f"{summary['epochs']} epochs" if summary.get("epochs") else None
    detail = "; ".join(x for x in (epochs, conditions) if x)
    if time == "–":
        return detail or time
    return f"{time} ({detail})" if detail else time


def presets_table(root: Path = ROOT) -> str:
    """README: one line per preset, with its reference run's test accuracy and training time."""
    records = preset_records(root)
    lines = ["| preset | what it is | test accuracy | training time, 2 CPU cores | record |", "| --- | --- | --- | --- | --- |"]
    for preset in preset_names():
        record = records.get(preset)
        accuracy = percent(record["summary"].get("test_accuracy")) if record else "not measured"
        source = record["source"] if record else "–"
        lines.append(f"| `{preset}` | {short_description(preset)} | {accuracy} | {time_cell(record)} | {source} |")
    return "\n".join(lines) + "\n"


def results_table(root: Path = ROOT) -> str:
    """README and docs: each local preset against its backprop baseline on the same network."""
    records = preset_records(root)
    lines = ["| network | local rule | test accuracy | backprop, same network | test accuracy | local − backprop |",
             "| --- | --- | --- | --- | --- | --- |"]
    for local, baseline in BASELINES:
        a, b = (records.get(p, {}).get("summary", {}).get("test_accuracy") for p in (local, baseline))
        gap = "–" if a is None or b is None else f"{100 * (a - b):+.2f} points"
        lines.append(f"| {network(local)} | `{local}` | {percent(a)} | `{baseline}` | {percent(b)} | {gap} |")
    return "\n".join(lines) + "\n"


def network(preset: str) -> str:
    model = load_config(preset).model
    if model.arch == "mlp":
        widths = model.hidden
        return f"MLP {len(widths)}×{widths[0]}" if len(set(widths)) == 1 else f"MLP {'-'.join(map(str, widths))}"
    if model.arch.startswith("resnet"):
        return f"{model.arch} width {model.width}"
    return f"{model.arch} {'-'.join(map(str, model.channels))}"


def presets_page(root: Path = ROOT) -> str:
    """Docs: every preset with its description, settings and stored reference run."""
    records = preset_records(root)
    out = [presets_table(root)]
    for preset in preset_names():
        config, record = load_config(preset), records.get(preset)
        out.append(f"## `{preset}`\n\n{config.description}\n")
        out.append(f"- method `{config.method.name}`, network {network(preset)}, `train.granularity={config.train.granularity}`, "
                   f"{config.train.epochs} epochs, batch {config.data.batch_size}, {config.optim.name} at {config.optim.lr:g}")
        if record is None:
            out.append("- no reference run stored yet")
        else:
            summary = record["summary"]
            out.append(f"- reference run: test {percent(summary.get('test_accuracy'))}, validation {percent(summary.get('val_accuracy'))}, "
                       f"training {time_cell(record)} ({record['source']})")
            out.append(f"- command: `{record['command']}`")
        out.append(f"\n`src/locallearn/presets/{preset}.yaml`, its comments saying why:\n\n```yaml\n{preset_text(preset).rstrip()}\n```\n")
    return "\n".join(out)


def log_table(presets: list[str], root: Path = ROOT) -> str:
    """Docs: the runs of these presets (reference runs first, then the experiment log in order), one line each."""
    folder = root / "results" / "transcribed"
    log = load_records(folder) if folder.is_dir() else []
    reference = [r for name, r in sorted(preset_records(root).items()) if name in presets and "test_accuracy" in r["summary"]]
    rows = reference + [r for r in log if r["summary"].get("preset") in presets and "test_accuracy" in r["summary"]]
    columns = [("run", lambda r: ("**preset** " if r in reference else f"{r['name'][:3]} · ") + label(r)),
               ("test", lambda r: percent(r["summary"].get("test_accuracy"))),
               ("val", lambda r: percent(r["summary"].get("val_accuracy"))),
               ("training time", lambda r: duration(r["summary"].get("train_seconds"))),
               ("command", lambda r: f"`{r['command']}`")]
    return markdown_table(rows, columns)


def speed_table(root: Path = ROOT) -> str:
    """Docs: the engine against a hand-written loop of the same math (records with a `ratio`)."""
    records = [r for r in preset_records(root).values() if "ratio" in r["summary"]]
    records += [r for r in load_records(root / "results" / "transcribed") if "ratio" in r["summary"]]
    return markdown_table(records, [("workload", label), ("locallearn", lambda r: f"{r['summary']['seconds_per_epoch']:g} s"),
                                    ("hand-written", lambda r: f"{r['summary']['handwritten_seconds_per_epoch']:g} s"),
                                    ("ratio", "summary.ratio"), ("command", lambda r: f"`{r['command']}`")])


def throughput_table(root: Path = ROOT) -> str:
    """Docs: samples per second of one network in one process, data parallel and pipelined."""
    records = [r for r in load_records(root / "results" / "transcribed") if "samples_per_second" in r["summary"]]
    return markdown_table(records, [("setup", lambda r: r["machine"]["conditions"]), ("samples/s", "summary.samples_per_second"),
                                    ("vs one process", lambda r: f"{r['summary']['relative_to_one_process']:.2f}×"),
                                    ("command", lambda r: f"`{r['command']}`")])


def memory_table(args: list[str], root: Path = ROOT) -> str:
    """Docs: activation memory against depth, local vs end to end, from `benchmarks/memory_depth.py`'s JSON output (`args`: its file names)."""
    out = []
    for name in args:
        result = json.loads((root / "benchmarks" / "results" / name).read_text())
        by = {(row["depth"], row["granularity"]): row for row in result["rows"]}
        depths = sorted({depth for depth, _ in by})
        lines = [f"{result['title']} (`python benchmarks/memory_depth.py {' '.join(result['settings'])}`), MiB:\n",
                 "| depth | " + " | ".join(map(str, depths)) + " |", "|" + " --- |" * (len(depths) + 1)]
        for granularity, what in (("layer", "local: peak above baseline"), ("layer", "local: saved for backward"),
                                  ("end-to-end", "end to end: peak above baseline"), ("end-to-end", "end to end: saved for backward")):
            key = "activation_mb" if "peak" in what else "saved_for_backward_mb"
            lines.append(f"| {what} | " + " | ".join(f"{by[d, granularity][key]:.1f}" for d in depths) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def memory_granularity_table(args: list[str], root: Path = ROOT) -> str:
    """Docs: peak training memory against the number of blocks, from `benchmarks/memory_granularity.py`'s JSON output (`args`: its file names)."""
    out = []
    for name in args:
        result = json.loads((root / "benchmarks" / "results" / name).read_text())
        rows = result["rows"]
        lines = [f"`python benchmarks/memory_granularity.py {' '.join(result['settings'])}`: peak resident MiB above the process's baseline, "
                 "and the peak of the activations autograd held for backward:\n",
                 "| granularity | " + " | ".join(row["granularity"] for row in rows) + " |", "|" + " --- |" * (len(rows) + 1),
                 "| blocks (K) | " + " | ".join(str(row["blocks"]) for row in rows) + " |",
                 "| peak MiB | " + " | ".join(f"{row['peak_above_baseline_mb']:.0f}" for row in rows) + " |",
                 "| vs end to end | " + " | ".join(f"{row['peak_above_baseline_mb'] / rows[0]['peak_above_baseline_mb']:.2f}" for row in rows) + " |"]
        if all("saved_activations_mb" in row for row in rows):
            lines.append("| saved activations MiB | " + " | ".join(f"{row['saved_activations_mb']:.1f}" for row in rows) + " |")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def overlap_cost_table(args: list[str], root: Path = ROOT) -> str:
    """Docs: a step with `train.overlap` against the plain step and a hand-written loop of the overlap's math, from `benchmarks/overlap_cost.py`'s JSON."""
    result = json.loads((root / "benchmarks" / "results" / "overlap_cost.json").read_text())
    rows = [f"| {name} | {seconds * 1000:.0f} ms | {result['vs_plain'][name]:.2f}× |" for name, seconds in result["median_step_seconds"].items()]
    return "\n".join([f"`{result['command']}` (K = {result['blocks']}), median of alternating steps:\n",
                      "| step | time | vs plain |", "| --- | --- | --- |", *rows]) + "\n"


# ---- studies and folders of records ------------------------------------------------------

def study_rows(name: str, root: Path = ROOT) -> list[dict]:
    """The report rows (mean ± std per objective and K) of study `studies/NAME.yaml` from its records in `results/NAME/`."""
    from locallearn.study import load_study
    from locallearn.study_report import aggregate

    rows, _ = aggregate(load_study(root / "studies" / f"{name}.yaml"), root / "results" / name)
    if not rows:
        raise ValueError(f"study {name}: no records in {root / 'results' / name}")
    return rows


def study_table(args: list[str], root: Path = ROOT) -> str:
    """Docs: a study's table as its report gives it (`args`: the study's name), from its records."""
    from locallearn.study_report import COLUMNS

    return markdown_table(study_rows(args[0], root), COLUMNS)


def granularity_table(root: Path = ROOT, name: str = "granularity-fmnist") -> str:
    """README: test accuracy against K, one column per objective of the full granularity study."""
    rows = study_rows(name, root)
    lines, ks = list(dict.fromkeys(r["line"] for r in rows)), sorted({r["k"] for r in rows})
    by = {(r["line"], r["k"]): r for r in rows}
    out = ["| K (blocks) | " + " | ".join(f"{line}: test %" for line in lines) + " |", "|" + " --- |" * (len(lines) + 1)]
    for k in ks:
        cells = [by[line, k]["test"] + (f" ({by[line, k]['gap']})" if by[line, k].get("gap") else "")
                 if (line, k) in by and by[line, k]["test"] else "–" for line in lines]
        out.append(f"| {k}{' (end to end)' if k == 1 else ''} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def per_block(record: dict) -> str:
    """Each block's (or layer's) own test accuracy, in order: how much each depth holds alone."""
    scores = record["summary"].get("test_accuracy_by_classifier") or {}
    return " · ".join(f"{100 * v:.1f}" for k, v in scores.items() if re.fullmatch(r"(block|layer)\d+", k)) or None


def first_sentence(record: dict) -> str:
    return re.split(r"(?<=\.) ", label(record), maxsplit=1)[0].rstrip(".")


def records_table(args: list[str], root: Path = ROOT) -> str:
    """Docs: the records of `results/FOLDER`, one line each with each block's own accuracy, then their commands (`args`: the folder, then optionally record names in the order wanted)."""
    folder, order = args[0], args[1:]
    records = {r["name"]: r for r in load_records(root / "results" / folder)}
    if not records or not set(order) <= set(records):
        raise ValueError(f"results/{folder} has no records {', '.join(sorted(set(order) - set(records))) or ''}".strip())
    rows = [records[name] for name in order or records]
    table = markdown_table(rows, [("run", "name"), ("what", first_sentence), ("granularity", "summary.granularity"),
                                  ("test", lambda r: percent(r["summary"].get("test_accuracy"))),
                                  ("val", lambda r: percent(r["summary"].get("val_accuracy"))),
                                  ("each block alone, test %", per_block)])
    commands = "".join(f"- `{r['name']}`: `{r['command']}`\n" for r in rows)
    return f"{table}\nThe commands (records in `results/{folder}/`):\n\n{commands}"


# ---- the README and the docs' hook -------------------------------------------------------

GENERATORS = {
    "config": lambda args, root: config_reference(),
    "presets": lambda args, root: presets_page(root),
    "presets-table": lambda args, root: presets_table(root),
    "results": lambda args, root: results_table(root),
    "log": log_table,
    "speed": lambda args, root: speed_table(root),
    "throughput": lambda args, root: throughput_table(root),
    "memory": memory_table,
    "memory-granularity": memory_granularity_table,
    "overlap-cost": overlap_cost_table,
    "study": study_table,
    "granularity": lambda args, root: granularity_table(root),
    "records": records_table,
}
README_TABLES = {"presets": presets_table, "results": results_table, "granularity": granularity_table}


def generate(name: str, args: list[str], root: Path = ROOT) -> str:
    """The Markdown of the generated table `name` (`log` takes the presets whose runs it lists)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generated table {name!r}; valid: {', '.join(GENERATORS)}")
    return GENERATORS[name](args, root)


def render_readme(text: str, root: Path = ROOT) -> str:
    """`text` with every `<!-- table:NAME -->` block regenerated from the records."""
    return README_TABLE.sub(lambda m: m.group(1) + README_TABLES[m.group(2)](root) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m locallearn.doc_tables", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite README.md's generated tables")
    action.add_argument("--check", action="store_true", help="exit 1 if README.md's tables differ from the records")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: the one holding this package)")
    args = parser.parse_args(argv)
    readme = args.root / "README.md"
    text = readme.read_text()
    fresh = render_readme(text, args.root)
    if args.check:
        if fresh != text:
            print(f"{readme}: its tables differ from the records; run python -m locallearn.doc_tables --write", file=sys.stderr)
            return 1
        return 0
    if fresh != text:
        write_text_atomic(readme, fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
