"""MkDocs hooks: each `<!-- generated: NAME ARGS -->` line of a page becomes the table `locallearn.doc_tables` makes from the code and the records,
and the plots in `results/` are published with the site, so that a page links them as `../results/...` (a path that also works on GitHub)."""

import re
from pathlib import Path

from mkdocs.structure.files import File

from locallearn.doc_tables import generate

MARKER = re.compile(r"^<!-- generated: ([\w-]+)((?: [\w.-]+)*) -->$", re.M)
RESULTS_LINK = re.compile(r"\]\(\.\./((?:\.\./)*results/)")
ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    for plot in sorted((ROOT / "results").rglob("*.png")):
        files.append(File(str(plot.relative_to(ROOT)), src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    markdown = MARKER.sub(lambda m: generate(m.group(1), m.group(2).split()), markdown)
    return RESULTS_LINK.sub(r"](\1", markdown)  # docs/ is the site's root: one `../` fewer reaches results/
