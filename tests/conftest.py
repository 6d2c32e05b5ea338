"""Shared test setup: `tests/` on sys.path (so tests can `import datafiles`) and hypothesis profiles.

Profiles: "default" (200 examples) for the normal run, "fuzz" (5000) for a long run:
`HYPOTHESIS_PROFILE=fuzz pytest tests/test_data.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile("fuzz", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="module")
def one_thread():
    """Small convolutions on a shared 2-core machine run far faster on one thread than on contended two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
