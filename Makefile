# `make train`: set up and train the default preset on Fashion-MNIST.
# `make test`:  set up and run the test suite.
# `make docs`:  set up and build the documentation site into site/ (warnings are errors).
VENV := .venv
PRESET ?= ff-supervised-small
OUT ?=

.PHONY: setup data train test docs bench clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: $(VENV)/.installed

data: setup
	$(VENV)/bin/python -m locallearn.data.fetch fashion-mnist

train: data
	$(VENV)/bin/locallearn train $(PRESET) $(if $(OUT),--out $(OUT)) $(ARGS)

test: setup
	$(VENV)/bin/python -m pytest

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/python -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: data
	$(VENV)/bin/python benchmarks/ff_speed.py

clean:
	rm -rf $(VENV) .pytest_cache site
