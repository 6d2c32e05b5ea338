"""Print the table of results/dino/README.md from the records here: `PYTHONPATH=src python results/dino/table.py` (run from the repository root)."""
from locallearn.records import load_records, markdown_table
pct = lambda path: (lambda r: None if r["summary"].get(path) is None else f"{100 * r['summary'][path]:.2f}")
last_val = lambda r: f"{100 * r['summary']['per_block'][-1]['probe_val_accuracy']:.2f}"
print(markdown_table(load_records("results/dino"), [
    ("record", "name"), ("preset", "summary.preset"), ("cut", "config.train.granularity"),
    ("teacher momentum", lambda r: r["config"]["method"]["dino"]["teacher_momentum"] if r["config"]["method"]["loss"] == "dino" else None),
    ("small crops", lambda r: r["config"]["method"]["dino"]["local_crops"] if r["config"]["method"]["loss"] == "dino" else None),
    ("last-block probe, val %", last_val), ("test %", pct("test_accuracy")), ("train s (loaded machine)", lambda r: round(r["summary"]["train_seconds"]))]), end="")
