"""MkDocs hook: each `<!-- generated: NAME ARGS -->` line of a page becomes the table `locallearn.doc_tables` makes from the code and the records."""

import re

from locallearn.doc_tables import generate

MARKER = re.compile(r"^<!-- generated: ([\w-]+)((?: [\w.-]+)*) -->$", re.M)


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: generate(m.group(1), m.group(2).split()), markdown)
