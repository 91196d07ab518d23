#!/usr/bin/env bash
# The device defaults on a GPU machine, in one short run (a few minutes on one GPU):
#   1. the recipe for 1 epoch with the defaults (expected: the GPU, one process, bf16-mixed or 16-mixed),
#   2. the same with trainer.devices=1 trainer.accelerator=cpu on the same machine (expected: 32-true),
#   3. a 2-job sweep (optimizer=Adam,SGD) with the defaults (expected: each job once, on the GPU),
# then one line per run: precision used, training images/s (fit, validation included) and test accuracy.
#
# Usage: bench/gpu_check.sh [extra overrides...]   e.g. bench/gpu_check.sh img_size=32
#   RAW_DIR=<folder with the four MNIST IDX files> when data/ is not prepared (default: shared/data/mnist
#   if present, else data/raw); OUT=<folder> for the runs (default: outputs/gpu_check).
# Exits 3 without a CUDA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-outputs/gpu_check}
if [ -z "${RAW_DIR:-}" ]; then
  if [ -d shared/data/mnist ]; then RAW_DIR=shared/data/mnist; else RAW_DIR=data/raw; fi
fi

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA GPU is visible to torch (torch.cuda.is_available() is False)." >&2
  echo "Run it on a machine with an NVIDIA GPU and a CUDA build of torch." >&2
  exit 3
fi
"$PYTHON" -c 'import torch; print("gpu_check:", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0))'

if [ ! -d data/train ]; then
  "$PYTHON" -m digitcls.data.prepare --raw-dir "$RAW_DIR" --out-dir data
fi
rm -rf "$OUT"
COMMON=(+experiment=mbv3 epochs=1 trainer.enable_progress_bar=false "$@")

"$PYTHON" -m digitcls.train "${COMMON[@]}" "hydra.run.dir=$OUT/gpu_defaults"
"$PYTHON" -m digitcls.train "${COMMON[@]}" trainer.devices=1 trainer.accelerator=cpu "hydra.run.dir=$OUT/cpu"
"$PYTHON" -m digitcls.train -m "${COMMON[@]}" optimizer=Adam,SGD "hydra.sweep.dir=$OUT/sweep"

"$PYTHON" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {"gpu defaults": out / "gpu_defaults", "cpu": out / "cpu",
        "sweep job 0": out / "sweep" / "0", "sweep job 1": out / "sweep" / "1"}
print(f"\n{'run':<14}{'precision':<12}{'img/s':>10}{'test acc':>11}")
for name, folder in runs.items():
    summary = json.loads((folder / "summary.json").read_text())
    rate = summary.get("fit_images_per_s")
    acc = summary.get("test_acc")
    print(f"{name:<14}{summary.get('precision', '?'):<12}{rate if rate is not None else 'n/a':>10}"
          f"{f'{acc:.4%}' if acc is not None else 'n/a':>11}")
EOF
