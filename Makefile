# The two commands of the README:
#   make demo   set up, then run the main job end to end on the built-in sample dataset
#   make test   set up, then run the test suite
# Setup installs torch first (a CPU wheel where one is available), then the rest,
# so that pip never swaps it for a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= nnseg_demo

.PHONY: setup test test-all demo lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[dev,slicer,gui]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ""

demo: setup
	$(VENV)/bin/nnseg demo $(DEMO_DIR)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
