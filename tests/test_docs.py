"""The README and the docs: short, self-contained, every config key described, every number generated from records."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from locallearn import doc_tables
from locallearn.config import preset_names
from locallearn.records import load_records

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|href=\"([^\"]+)\"")
GENERATED_BLOCK = re.compile(r"<!-- table:(\w+) -->.*?<!-- /table:\1 -->", re.S)
RESULT_NUMBER = re.compile(r"\b\d{1,3}\.\d+ ?%")


def test_readme_is_at_most_15_kb():
    assert README.stat().st_size <= 15 * 1024


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_links_are_urls_or_paths_inside_the_repository_that_exist(path):
    for match in LINK.finditer(path.read_text()):
        target = match.group(1) or match.group(2)
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        resolved = (path.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} points outside the repository"
        assert resolved.exists(), f"{path.name}: {target} does not exist"


def test_every_config_key_and_method_option_has_a_description():
    keys = list(doc_tables.all_schema_keys())
    assert any(key == "method.label_strength" for key, _ in keys) and any(key == "method.augment.crop_scale" for key, _ in keys)
    missing = [key for key, field in keys if not (field.description or "").strip()]
    assert not missing, f"config keys without Field(description=...): {missing}"


def test_the_configuration_reference_lists_every_key():
    reference = doc_tables.config_reference()
    for key, field in doc_tables.all_schema_keys():
        if doc_tables.type_name(field.annotation) != "section":
            assert f"| `{key}` |" in reference


def test_readme_tables_are_the_ones_the_records_generate():
    text = README.read_text()
    assert set(re.findall(r"<!-- table:(\w+) -->", text)) == set(doc_tables.README_TABLES)
    assert doc_tables.render_readme(text) == text, "README.md's tables differ from the records: run python -m locallearn.doc_tables --write"


def test_check_fails_when_a_readme_number_is_edited_by_hand(tmp_path):
    for folder in ("studies", "results"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    record = load_records(tmp_path / "results" / "presets")[0]
    shown = doc_tables.percent(record["summary"]["test_accuracy"])
    text = README.read_text()
    assert shown in text
    (tmp_path / "README.md").write_text(text)
    assert doc_tables.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "README.md").write_text(text.replace(shown, "99.99%", 1))
    assert doc_tables.main(["--check", "--root", str(tmp_path)]) == 1
    assert doc_tables.main(["--write", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == text


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_result_number_is_typed_by_hand(path):
    prose = GENERATED_BLOCK.sub("", path.read_text())
    assert not RESULT_NUMBER.findall(prose), f"{path.name} types result numbers; generate them from records"


def test_generated_markers_name_known_tables_and_presets():
    for path in PAGES:
        for name, args in re.findall(r"<!-- generated: ([\w-]+)((?: [\w.-]+)*) -->", path.read_text()):
            assert name in doc_tables.GENERATORS, f"{path.name}: unknown generated table {name}"
            if name == "log":
                assert set(args.split()) <= set(preset_names()), f"{path.name}: {args} names an unknown preset"
            assert doc_tables.generate(name, args.split()).strip()


def test_preset_records_belong_to_real_presets():
    records = load_records(ROOT / "results" / "presets")
    assert records
    for record in records:
        assert record["name"] in preset_names() and record["summary"]["preset"] == record["name"]
    assert all(r["summary"].get("preset") in preset_names() for r in load_records(ROOT / "results" / "transcribed"))


def test_study_table_is_the_one_the_study_report_wrote_from_the_same_records():
    table = doc_tables.generate("study", ["granularity-quick"])
    assert table in (ROOT / "results" / "granularity-quick" / "report.md").read_text()


def test_granularity_table_follows_the_study_records(tmp_path):
    for folder in ("studies", "results"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    for seed in (0, 1):
        path = tmp_path / "results" / "granularity-fmnist" / f"vicreg_granularity-block-8_seed-{seed}.json"
        record = json.loads(path.read_text())
        record["summary"]["test_accuracy"] = 0.5
        path.write_text(json.dumps(record))
    row = next(line for line in doc_tables.granularity_table(tmp_path).splitlines() if line.startswith("| 8 |"))
    assert row.split(" | ")[2] == "50.00 ± 0.00 (-34.62)"
    (tmp_path / "README.md").write_text(README.read_text())
    assert doc_tables.main(["--check", "--root", str(tmp_path)]) == 1


def test_records_table_lists_the_records_asked_in_their_order():
    order = ["vgg-e2e", "vgg-k8-plain-heads", "vgg-k8-deep-heads", "vgg-k8-deep-heads-infopro"]
    rows = doc_tables.generate("records", ["netcut", *order]).split("\n\n")[0].splitlines()[2:]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == order
    assert " | 54.2 · 68.9 · " in rows[1]  # the plain heads' first blocks alone, from test_accuracy_by_classifier
    with pytest.raises(ValueError, match="no-such-run"):
        doc_tables.generate("records", ["netcut", "no-such-run"])


def test_docs_hook_publishes_the_result_plots_that_pages_link_as_in_the_repository(tmp_path):
    Files = pytest.importorskip("mkdocs.structure.files", reason="the docs extra is not installed").Files
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    files = hooks.on_files(Files([]), {"site_dir": str(tmp_path), "use_directory_urls": True})
    assert "results/granularity-quick/accuracy.png" in {f.src_uri for f in files}
    page = "![a](../results/x/a.png) and [b](../../results/b.png) <!-- generated: granularity -->"
    out = hooks.on_page_markdown(page.replace(" <!--", "\n<!--"), None, None, None)
    assert out.startswith("![a](results/x/a.png) and [b](../results/b.png)\n| K (blocks) |")


def test_overlap_cost_table_reads_the_benchmarks_result(tmp_path):
    from locallearn.doc_tables import generate

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    result = {"command": "python benchmarks/overlap_cost.py --blocks 8", "blocks": 8, "median_step_seconds": {"plain": 0.2, "overlap": 0.33},
              "vs_plain": {"plain": 1.0, "overlap": 1.65}}
    (tmp_path / "benchmarks" / "results" / "overlap_cost.json").write_text(json.dumps(result))
    table = generate("overlap-cost", [], tmp_path)
    assert "`python benchmarks/overlap_cost.py --blocks 8` (K = 8)" in table and "| overlap | 330 ms | 1.65× |" in table


def test_memory_granularity_table_reads_the_benchmarks_rows(tmp_path):
    from locallearn.doc_tables import generate

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    rows = [{"granularity": "end-to-end", "blocks": 1, "peak_above_baseline_mb": 200.0, "saved_activations_mb": 97.66},
            {"granularity": "block:4", "blocks": 4, "peak_above_baseline_mb": 50.0, "saved_activations_mb": 38.7}]
    (tmp_path / "benchmarks" / "results" / "m.json").write_text(json.dumps({"settings": ["--arch=vgg"], "rows": rows}))
    table = generate("memory-granularity", ["m.json"], tmp_path)
    assert "memory_granularity.py --arch=vgg" in table and "| peak MiB | 200 | 50 |" in table and "| vs end to end | 1.00 | 0.25 |" in table
    assert "| saved activations MiB | 97.7 | 38.7 |" in table
