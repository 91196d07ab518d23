#!/usr/bin/env bash
# Seconds of training to 99.0 % / 99.5 % MNIST test accuracy on one GPU (targets on an H100/H200-class
# GPU: <= 5 s and <= 15 s). Needs prepared data (make data) or the IDX files under data/raw.
# Writes bench/results/gpu_time_to_accuracy.json. Extra arguments go to the Python script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no NVIDIA GPU visible" >&2; exit 1; }
$PYTHON bench/gpu_time_to_accuracy.py --output bench/results/gpu_time_to_accuracy.json "$@"
