# digitcls — `make help` lists the targets.
PYTHON ?= python
RAW_DIR ?= data/raw
DATA_DIR ?= data
ARGS ?=
MODEL ?=
SWEEP ?= optim_grid

.DEFAULT_GOAL := help
.PHONY: help install data train sweep evaluate predict export serve summarize test test-slow test-all bench bench-accuracy notebook lint format clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-15s %s\n", $$1, $$2}'

install: ## install digitcls and its dev tools into the active Python (editable)
	$(PYTHON) -m pip install -e ".[dev]"

data: ## MNIST IDX files -> data/{train,val,test}/<digit>/*.png (RAW_DIR=..., DATA_DIR=..., ARGS="--val-size 5000")
	$(PYTHON) -m digitcls.data.prepare --raw-dir $(RAW_DIR) --out-dir $(DATA_DIR) $(ARGS)

train: ## train +experiment=mbv3 (extra overrides: ARGS="epochs=3 img_size=32")
	$(PYTHON) -m digitcls.train +experiment=mbv3 $(ARGS)

sweep: ## the optimizer x scheduler grid (SWEEP=optim_grid, ARGS=...)
	$(PYTHON) -m digitcls.train -m +experiment=mbv3 +sweep=$(SWEEP) $(ARGS)

evaluate: ## metrics, confusion matrix and worst mistakes of a checkpoint (MODEL=... default: newest best)
	$(PYTHON) -m digitcls.evaluate $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

predict: ## label every image under test_path into pre.csv (MODEL=... default: newest best)
	$(PYTHON) -m digitcls.predict $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

export: ## export a checkpoint to ONNX and TorchScript (MODEL=...)
	$(PYTHON) -m digitcls.export $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

serve: ## serve the model over HTTP + a drawing page at http://127.0.0.1:8000/ (MODEL=..., ARGS="port=8080")
	$(PYTHON) -m digitcls.serve $(if $(MODEL),model_path=$(MODEL)) $(ARGS)

summarize: ## rebuild a sweep's summary.csv/.md and val-acc plot (SWEEP_DIR=multirun/<date>/<time>)
	$(PYTHON) -m digitcls.summarize $(SWEEP_DIR)

test: ## the default test suite (fast; real-MNIST tests run when ../shared/data/mnist exists)
	$(PYTHON) -m pytest

test-slow: ## only the slow tests (DDP, long runs, large folders)
	$(PYTHON) -m pytest -m slow

test-all: ## every test, slow included
	$(PYTHON) -m pytest -m "slow or not slow"

bench: ## speed benchmarks -> bench/results/latest.json (ratios measured side by side)
	$(PYTHON) bench/run_all.py

bench-accuracy: ## train both recipes on full MNIST -> bench/results/accuracy.json (~10 + ~30 min on 2 cores)
	$(PYTHON) bench/bench_accuracy.py $(ARGS)

notebook: ## execute notebooks/01_explore_mnist.ipynb headless -> outputs/notebooks/
	$(PYTHON) -m digitcls.notebook notebooks/01_explore_mnist.ipynb

lint: ## ruff
	$(PYTHON) -m ruff check src tests bench

format: ## ruff format + autofix
	$(PYTHON) -m ruff check --fix src tests bench
	$(PYTHON) -m ruff format src tests bench

clean: ## remove outputs, caches and prepared data (keeps raw IDX files)
	rm -rf outputs multirun lightning_logs .pytest_cache .ruff_cache pre.csv pre_errors.csv predictions.png
	rm -rf $(DATA_DIR)/train $(DATA_DIR)/val $(DATA_DIR)/test $(DATA_DIR)/.cache $(DATA_DIR)/.prepared.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
