# `make train`: set up and train the default preset on Fashion-MNIST.
# `make test`:  set up and run the test suite.
VENV := .venv
PRESET ?= ff-supervised-small
OUT ?=

.PHONY: setup data train test bench clean

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

bench: data
	$(VENV)/bin/python benchmarks/ff_speed.py

clean:
	rm -rf $(VENV) .pytest_cache
