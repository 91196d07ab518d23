# digitcls — `make help` lists the targets.
# The interpreter: the active virtual environment's (VIRTUAL_ENV or CONDA_PREFIX set), else .venv's,
# which `make install` creates with the first of python3/python on PATH. PYTHON=... overrides both.
VENV ?= .venv
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PYTHON ?= python
else
PYTHON ?= $(VENV)/bin/python
endif
BASE_PYTHON ?= $(shell command -v python3 || command -v python)
# torch pinned to the build digitcls is tested with (pyproject allows a range, which may pull a multi-GB
# download); `make install TORCH=` keeps the torch you have
TORCH ?= torch==2.14.1 torchvision==0.29.1
RAW_DIR ?= data/raw
DATA_DIR ?= data
ARGS ?=
MODEL ?=
SWEEP ?= optim_grid
SEEDS ?= 1,2,3

.DEFAULT_GOAL := help
.PHONY: help python-ready install data train sweep evaluate predict export serve summarize test test-slow test-all bench bench-accuracy notebook lint format clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-15s %s\n", $$1, $$2}'

install: ## install digitcls (editable) and its dev tools into the active environment, else into a new .venv
	@if [ "$(PYTHON)" = "$(VENV)/bin/python" ] && [ ! -x "$(PYTHON)" ]; then \
		test -n "$(BASE_PYTHON)" || { echo "make install: neither python3 nor python is on PATH" >&2; exit 1; }; \
		echo "creating $(VENV) with $(BASE_PYTHON)"; $(BASE_PYTHON) -m venv $(VENV); \
	fi
	$(PYTHON) -m pip install $(TORCH) -e ".[dev]"

python-ready:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: run \`make install\` first (or activate your environment)" >&2; exit 1; }

data: | python-ready ## MNIST IDX files -> data/{train,val,test}/<digit>/*.png (RAW_DIR=..., DATA_DIR=..., ARGS="--val-size 5000")
	$(PYTHON) -m digitcls.data.prepare --raw-dir $(RAW_DIR) --out-dir $(DATA_DIR) $(ARGS)

train: | python-ready ## train +experiment=mbv3 (extra overrides: ARGS="epochs=3 img_size=32")
	$(PYTHON) -m digitcls.train +experiment=mbv3 $(ARGS)

sweep: | python-ready ## the optimizer x scheduler grid (SWEEP=optim_grid, ARGS=...)
	$(PYTHON) -m digitcls.train -m +experiment=mbv3 +sweep=$(SWEEP) $(ARGS)

evaluate: | python-ready ## metrics, confusion matrix and worst mistakes of a checkpoint (MODEL=... default: newest best)
	$(PYTHON) -m digitcls.evaluate $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

predict: | python-ready ## label every image under test_path into pre.csv (MODEL=... default: newest best)
	$(PYTHON) -m digitcls.predict $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

export: | python-ready ## export a checkpoint to ONNX (MODEL=...; ARGS="format=torchscript" or "format=all" for TorchScript too)
	$(PYTHON) -m digitcls.export $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

serve: | python-ready ## serve the model over HTTP + a drawing page at http://127.0.0.1:8000/; Ctrl-C stops (MODEL=..., ARGS="port=8080")
	$(PYTHON) -m digitcls.serve $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

summarize: | python-ready ## rebuild a sweep's summary.csv/.md and val-acc plot (SWEEP_DIR=multirun/<date>/<time>)
	$(PYTHON) -m digitcls.summarize $(SWEEP_DIR)

test: | python-ready ## the default test suite (fast; real-MNIST tests run when ../shared/data/mnist exists)
	$(PYTHON) -m pytest

test-slow: | python-ready ## only the slow tests (DDP, long runs, large folders)
	$(PYTHON) -m pytest -m slow

test-all: | python-ready ## every test, slow included
	$(PYTHON) -m pytest -m "slow or not slow"

bench: | python-ready ## speed benchmarks -> bench/results/latest.json (ratios measured side by side; refuses on a busy machine)
	$(PYTHON) bench/run_all.py

bench-accuracy: | python-ready ## train the recipes on full MNIST over SEEDS=1,2,3 -> bench/results/accuracy.json (refuses on a busy machine)
	$(PYTHON) bench/bench_accuracy.py --seeds $(SEEDS) $(ARGS)

notebook: | python-ready ## execute notebooks/01_explore_mnist.ipynb headless -> outputs/notebooks/
	mkdir -p outputs/notebooks
	DIGITCLS_ROOT=$(CURDIR) $(PYTHON) -m jupyter execute --timeout=600 notebooks/01_explore_mnist.ipynb --output=../outputs/notebooks/01_explore_mnist

lint: | python-ready ## ruff, and lint-imports: the import layers declared in pyproject.toml
	$(PYTHON) -m ruff check src tests bench
	$(PYTHON) -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'

format: | python-ready ## ruff format + autofix
	$(PYTHON) -m ruff check --fix src tests bench
	$(PYTHON) -m ruff format src tests bench

clean: ## remove outputs, caches and prepared data (keeps raw IDX files)
	rm -rf outputs multirun lightning_logs .pytest_cache .ruff_cache pre.csv pre_errors.csv predictions.png
	rm -rf $(DATA_DIR)/train $(DATA_DIR)/val $(DATA_DIR)/test $(DATA_DIR)/.cache $(DATA_DIR)/.prepared.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
