"""Predict over 100,000 files: memory stays flat and throughput holds (images are streamed in batches).

Slow (about two minutes on 2 cores): ``make test-slow``. The files are one small PNG written 110,000 times
in folders of 1,000, so making them costs seconds; what is measured is listing, decoding and labelling.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.helpers import cli_env

# python -m digitcls.predict, reporting its own peak resident memory (ru_maxrss is in KiB on Linux)
MEASURED_PREDICT = """
import resource, runpy, sys
sys.argv = ["digitcls.predict", *sys.argv[1:]]
try:
    runpy.run_module("digitcls.predict", run_name="__main__")
finally:
    print(f"peak_rss_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}", file=sys.stderr)
"""


def make_folder(root: Path, count: int, png: bytes) -> Path:
    for n in range(count):
        folder = root / f"{n // 1000:03d}"
        if n % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"{n}.png").write_bytes(png)
    return root


def predict(folder: Path, checkpoint: Path, out: Path) -> tuple[float, float, int]:
    """(peak RSS in MiB, images/s as predict reports it, rows in pre.csv)."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_PREDICT, f"model_path={checkpoint}", f"test_path={folder}",
         f"output={out / 'pre.csv'}", "grid_size=0", "num_workers=2", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=1200, env=cli_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    peak = float(done.stderr.rsplit("peak_rss_mib=", 1)[1].split()[0])
    rate = float(done.stdout.rsplit("(", 1)[1].split(" images/s")[0])
    return peak, rate, len(pd.read_csv(out / "pre.csv"))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_predict_on_100k_files_keeps_memory_flat(untrained_checkpoint: Path, tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    small = make_folder(tmp_path / "small", 10_000, png)
    large = make_folder(tmp_path / "large", 100_000, png)

    small_peak, small_rate, small_rows = predict(small, untrained_checkpoint, tmp_path / "out_small")
    large_peak, large_rate, large_rows = predict(large, untrained_checkpoint, tmp_path / "out_large")

    assert (small_rows, large_rows) == (10_000, 100_000)
    # all 100,000 images decoded at once would take > 1 GiB as model input (3 x 32 x 32 float32 each);
    # what does grow with the count is the file list and pre.csv's rows (~100 bytes each)
    assert large_peak - small_peak < 150, (small_peak, large_peak)
    assert large_rate > 0.5 * small_rate, (small_rate, large_rate)  # no per-file cost growing with the count
    print(f"peak RSS {small_peak:.0f} -> {large_peak:.0f} MiB; {small_rate:.0f} -> {large_rate:.0f} images/s")
