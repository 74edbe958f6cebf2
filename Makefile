# repsim — the two set-up commands are `make demo` and `make test`; both build their own venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= out

.PHONY: help venv install install-test demo test lint bench sample-data clean

help:
	@echo "make demo   - create $(VENV), install repsim, compare + export the sample stores into $(OUT)/"
	@echo "make test   - install repsim with its test extras (and torch==2.13.0) and run the test suite"
	@echo "make bench  - run the benchmarks in bench/ (minutes; needs several GB of disk)"
	@echo "make lint   - ruff + mypy"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/python -m pip install -q .

# torch==2.13.0 first: it is the CPU build on the machine; any other request pulls CUDA wheels.
install-test: venv
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q ".[test,torch,dask]"

demo: install
	@mkdir -p $(OUT)
	$(BIN)/repsim info sample_data/digits_seed0.h5
	$(BIN)/repsim compare sample_data/digits_seed0.h5 sample_data/digits_seed1.h5 \
		-m cka -m cka:debiased=true -o $(OUT)/digits_cka.h5
	$(BIN)/repsim export $(OUT)/digits_cka.h5 --metric cka --annotate -o $(OUT)/digits_cka.png
	$(BIN)/repsim export $(OUT)/digits_cka.h5 -o $(OUT)/digits_cka.csv
	$(BIN)/repsim show $(OUT)/digits_cka.h5 --metric cka
	@echo "wrote $(OUT)/digits_cka.png and $(OUT)/digits_cka.csv"

# Tests run against the installed copy (tests/ has no __init__.py, so the repo root is not on sys.path).
test: install-test
	cd tests && ../$(BIN)/python -m pytest -q -p no:cacheprovider -c ../pyproject.toml --rootdir .. .

lint: install-test
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check repsim_cli tests bench
	$(BIN)/mypy

bench: install-test
	$(BIN)/python bench/run_all.py

sample-data: install-test
	$(BIN)/python sample_data/make_sample_data.py

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info bench/_work
