"""Shared fixtures: tiny generated datasets, in both raw (IDX) and prepared (image folder) form (helpers: helpers.py).

The images are digits drawn with OpenCV's Hershey font, jittered and noised: tiny, but learnable.
Every fixture writes into its own tmp_path, so tests may modify what they get.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import (
    IDX_FILES,
    balanced_labels,
    draw_digits,
    png_bytes,
    save_checkpoint,
    trained_checkpoint,
    write_idx_gz,
    write_tiny_folders,
)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two test processes share the CPU: one thread each (and in the commands they start), not two each
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def grad_mode_on() -> None:
    """Each test starts with autograd on, whatever an earlier test in the same process left behind."""
    torch.set_grad_enabled(True)


@pytest.fixture
def tiny_idx_arrays() -> dict[str, np.ndarray]:
    """The arrays behind ``tiny_idx_dir``: 200 train / 50 test 28x28 digits, 10 balanced classes."""
    train_labels = balanced_labels(20, seed=1)
    test_labels = balanced_labels(5, seed=2)
    return {
        "train_images": draw_digits(train_labels, seed=3),
        "train_labels": train_labels,
        "test_images": draw_digits(test_labels, seed=4),
        "test_labels": test_labels,
    }


@pytest.fixture
def tiny_idx_dir(tmp_path: Path, tiny_idx_arrays: dict[str, np.ndarray]) -> Path:
    """A raw folder holding the four MNIST-named ``*-ubyte.gz`` files (directly, not under MNIST/raw).

    Their dimensions are not MNIST's, so prepare validates them by structure, not by MD5."""
    raw = tmp_path / "tiny_raw"
    raw.mkdir()
    for key, name in IDX_FILES.items():
        write_idx_gz(raw / name, tiny_idx_arrays[key])
    return raw


@pytest.fixture
def tiny_folders(tmp_path: Path) -> Path:
    """A prepared dataset: ``<root>/{train,val,test}/<digit>/<n>.png`` with 200 / 50 / 50 28x28 grayscale PNGs."""
    return write_tiny_folders(tmp_path / "tiny_folders")


@pytest.fixture
def untrained_checkpoint(tmp_path: Path) -> Path:
    """A digitcls checkpoint (mobilenetv3_small, 32 px, classes 0-9) with seeded random weights: it gives
    every image the same answer, so it is for tests that need any checkpoint, never for comparing two
    ways of running one (use ``trained``)."""
    from digitcls.model.module import DigitClassifier

    torch.manual_seed(0)
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(10)], img_size=(32, 32))
    return save_checkpoint(model.eval(), tmp_path / "ckpt" / "mobilenetv3_small_e0_0.10000.ckpt")


@pytest.fixture(scope="session")
def trained_checkpoint_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained once per test process; tests take ``trained`` (their own copy)."""
    return trained_checkpoint(tmp_path_factory.mktemp("trained") / "mobilenetv3_small_e0_0.60000.ckpt")


@pytest.fixture
def trained(tmp_path: Path, trained_checkpoint_once: Path) -> Path:
    """A checkpoint whose answers depend on the image (``helpers.trained_checkpoint``): what every test that
    compares two ways of running a model needs. This test's own copy: it may write beside it (the ONNX cache)
    or overwrite it."""
    copy = tmp_path / "trained" / trained_checkpoint_once.name
    copy.parent.mkdir()
    return Path(shutil.copy2(trained_checkpoint_once, copy))


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of five 28x28 digit PNGs (the tests' generated digits), as `predict` would read them."""
    folder = tmp_path_factory.mktemp("digits")
    for n, image in enumerate(draw_digits(np.array([0, 3, 5, 7, 9]), seed=7)):
        (folder / f"{n}.png").write_bytes(png_bytes(image))
    return folder
