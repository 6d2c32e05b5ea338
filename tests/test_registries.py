"""Each name is listed once: config's Literals read the registries, and data/ modules do not import their package."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

import locallearn.data
from locallearn.config import DataConfig, ModelConfig, OptimConfig, load_config
from locallearn.data import DATASETS
from locallearn.errors import UsageError
from locallearn.nn.backbones import BUILDERS
from locallearn.optim import OPTIMIZERS, SCHEDULES


@pytest.mark.parametrize(("model", "key", "registry"), [(DataConfig, "name", DATASETS), (ModelConfig, "arch", BUILDERS),
                                                         (OptimConfig, "name", OPTIMIZERS), (OptimConfig, "schedule", SCHEDULES)])
def test_config_literals_are_the_registries(model, key, registry):
    assert get_args(model.model_fields[key].annotation) == tuple(registry)


def test_an_unknown_optimizer_is_a_one_line_error_listing_the_registry():
    with pytest.raises(UsageError, match="adam.*sgd.*lars") as err:
        load_config("ff-supervised-small", ["optim.name=rmsprop"])
    assert "\n" not in str(err.value)


def test_no_data_module_imports_its_package():
    for module in Path(locallearn.data.__file__).parent.glob("*.py"):
        if module.name != "__init__.py":
            assert "from locallearn.data import" not in module.read_text(), module.name
