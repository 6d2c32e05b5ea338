# `make train`: set up what training needs and train the default preset on Fashion-MNIST.
# `make test`:  set up with the test tools (the `dev` extra) and run the test suite.
# `make docs`:  set up with the `docs` extra and build the documentation site into site/ (warnings are errors).
# Set-up prints a line per step; pip's full log is .venv/setup.log.
VENV := .venv
PRESET ?= ff-supervised-small
OUT ?=

.PHONY: setup setup-dev data train test docs bench clean

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

$(VENV)/.installed-dev: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh dev
	touch $@ $(VENV)/.installed

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

data: setup
	$(VENV)/bin/python -m locallearn.data.fetch fashion-mnist

train: data
	$(VENV)/bin/locallearn train $(PRESET) $(if $(OUT),--out $(OUT)) $(ARGS)

test: setup-dev
	$(VENV)/bin/python -m pytest

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/python -m pip install -q -e ".[docs]" >> $(VENV)/setup.log
	touch $@

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: data
	$(VENV)/bin/python benchmarks/ff_speed.py

clean:
	rm -rf $(VENV) .pytest_cache site
