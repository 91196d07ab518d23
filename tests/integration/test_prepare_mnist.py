"""`make data` on the real MNIST files from ../shared/data/mnist (skipped when they are absent).

Prepares once per module with `make data` and checks counts, stratification, pixels and the no-op rerun.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from digitcls.data.prepare import RAW_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, read_idx_gz
from tests.helpers import MNIST, REPO, needs_real_mnist

OFFICIAL_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# the module fixture (real MNIST, run once) counts towards the first test's time
pytestmark = [pytest.mark.integration, needs_real_mnist, pytest.mark.timeout(900)]


def make_data(raw: Path, out: Path) -> subprocess.CompletedProcess:
    """`make data` as the README runs it (a missing make or target fails the test: it is what users type)."""
    command = ["make", "--no-print-directory", "data", f"RAW_DIR={raw}", f"DATA_DIR={out}", f"PYTHON={sys.executable}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The real files copied into torchvision's layout in a temp raw dir, prepared into a temp data dir."""
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "raw"
    (raw / "MNIST" / "raw").mkdir(parents=True)
    for name in RAW_FILES:
        shutil.copy(MNIST / name, raw / "MNIST" / "raw" / name)
    result = make_data(raw, root / "data")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "digitcls.data.prepare" in result.stdout  # make echoes the command it ran
    return {"raw": raw, "out": root / "data"}


def class_counts(split_dir: Path) -> list[int]:
    return [len(list((split_dir / str(d)).glob("*.png"))) for d in range(10)]


def test_counts_and_official_test_classes(prepared: dict) -> None:
    out = prepared["out"]
    assert sum(class_counts(out / "train")) == 55_000
    assert sum(class_counts(out / "val")) == 5_000
    assert class_counts(out / "test") == OFFICIAL_TEST_COUNTS
    assert (out / ".prepared.json").is_file()  # what makes the second run a no-op


def test_val_is_stratified_and_disjoint_from_train(prepared: dict) -> None:
    out = prepared["out"]
    labels = read_idx_gz(MNIST / TRAIN_LABELS)
    shares = np.bincount(labels, minlength=10) * 5000 / len(labels)
    assert np.all(np.abs(np.array(class_counts(out / "val")) - shares) < 1)
    val = {p.name for p in (out / "val").rglob("*.png")}
    assert not val & {
        p.name for p in (out / "train").rglob("*.png")
    }  # names are indices in the training file


def test_sample_of_pngs_is_pixel_exact(prepared: dict) -> None:
    out = prepared["out"]
    sources = {
        "train": (read_idx_gz(MNIST / TRAIN_IMAGES), read_idx_gz(MNIST / TRAIN_LABELS)),
        "test": (read_idx_gz(MNIST / TEST_IMAGES), read_idx_gz(MNIST / TEST_LABELS)),
    }
    rng = np.random.default_rng(0)
    for split, source in (("train", "train"), ("val", "train"), ("test", "test")):
        images, labels = sources[source]
        files = sorted((out / split).rglob("*.png"))
        for index in rng.choice(len(files), size=300, replace=False):
            path = files[index]
            n = int(path.stem)
            assert path.parent.name == str(labels[n])
            np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), images[n])


def test_second_run_is_a_fast_no_op(prepared: dict) -> None:
    started = time.perf_counter()
    result = make_data(prepared["raw"], prepared["out"])
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "up to date" in result.stdout + result.stderr
    print(f"\nsecond run: {seconds:.2f} s")
    assert seconds < 5
