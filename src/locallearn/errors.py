"""The two kinds of failure a user sees, each a one-line message and an exit status.

`UsageError` (exit 2): the command was wrong (unknown preset, unknown key, wrong type).
`RunError` (exit 1): the command was right but running it failed (missing or corrupt
data, unwritable folder, divergence). `DataError` is a `RunError` about dataset files.
"""

import difflib


class LocalLearnError(Exception):
    """Base class: `str(err)` is the whole one-line message shown to the user."""

    exit_status = 1


class UsageError(LocalLearnError):
    exit_status = 2


class RunError(LocalLearnError):
    exit_status = 1


class DataError(RunError):
    """A dataset file is missing, truncated or not in the expected format."""


def did_you_mean(word: str, choices) -> str:
    """` (did you mean 'x'?)` for the choice closest to a mistyped `word` (difflib), or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
