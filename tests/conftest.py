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

from locallearn.data import locate

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


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A tiny MNIST-format dataset; no other data folder (env, cache, Debian, download) can be found."""
    from helpers import tiny_dataset_folder  # tests/ is on sys.path only once this file has run

    monkeypatch.delenv("LOCALLEARN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "DEBIAN_FOLDERS", {})
    return tiny_dataset_folder(tmp_path)
