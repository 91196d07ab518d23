"""`make data` on the real MNIST files from ../shared/data/mnist (skipped when they are absent).

Prepares once per module (about 10-20 s on 2 cores) and checks counts, stratification and pixels.
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

pytestmark = [pytest.mark.integration, needs_real_mnist]


def make_has_data_target() -> bool:
    if shutil.which("make") is None or not (REPO / "Makefile").is_file():
        return False
    dry_run = subprocess.run(["make", "-n", "data"], cwd=REPO, capture_output=True, text=True)
    return dry_run.returncode == 0 and "digitcls.data.prepare" in dry_run.stdout


def run_prepare(raw: Path, out: Path, use_make: bool) -> subprocess.CompletedProcess:
    if use_make:
        command = ["make", "data", f"RAW_DIR={raw}", f"DATA_DIR={out}", f"PYTHON={sys.executable}"]
    else:
        command = [
            sys.executable,
            "-m",
            "digitcls.data.prepare",
            "--raw-dir",
            str(raw),
            "--out-dir",
            str(out),
        ]
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
    use_make = make_has_data_target()
    started = time.perf_counter()
    result = run_prepare(raw, root / "data", use_make)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"\nprepare on real MNIST ({'make data' if use_make else 'python -m'}): {seconds:.1f} s")
    return {"raw": raw, "out": root / "data", "use_make": use_make, "seconds": seconds}


def class_counts(split_dir: Path) -> list[int]:
    return [len(list((split_dir / str(d)).glob("*.png"))) for d in range(10)]


def test_counts_and_official_test_classes(prepared: dict) -> None:
    out = prepared["out"]
    assert sum(class_counts(out / "train")) == 55_000
    assert sum(class_counts(out / "val")) == 5_000
    assert class_counts(out / "test") == OFFICIAL_TEST_COUNTS


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
    result = run_prepare(prepared["raw"], prepared["out"], prepared["use_make"])
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "up to date" in result.stdout + result.stderr
    print(f"\nsecond run: {seconds:.2f} s")
    assert seconds < 5


def test_make_data_target(prepared: dict) -> None:
    if not prepared["use_make"]:
        pytest.skip("the Makefile has no `data` target running digitcls.data.prepare")
    assert (prepared["out"] / ".prepared.json").is_file()
