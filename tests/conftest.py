"""Shared fixtures: tiny generated datasets, in both raw (IDX) and prepared (image folder) form.

The images are digits drawn with OpenCV's Hershey font, jittered and noised: tiny, but learnable.
Every fixture writes into its own tmp_path, so tests may modify what they get.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two test processes share the CPU: one thread each (and in the commands they start), not two each
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def grad_mode_on() -> None:
    """Each test starts with autograd on, whatever an earlier test in the same process left behind."""
    torch.set_grad_enabled(True)


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def draw_digits(labels: np.ndarray, seed: int, size: int = 28) -> np.ndarray:
    """One size x size uint8 image per label: the digit in white on black, randomly shifted and noised."""
    rng = np.random.default_rng(seed)
    images = np.zeros((len(labels), size, size), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        dx, dy = rng.integers(-2, 3, size=2)
        cv2.putText(
            image,
            str(label % 10),
            (7 + int(dx), 21 + int(dy)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.8,
            255,
            2,
            cv2.LINE_AA,
        )
        noise = rng.normal(0, 12, image.shape)
        image[:] = np.clip(image + noise, 0, 255).astype(np.uint8)
    return images


def balanced_labels(per_class: int, seed: int, classes: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes, dtype=np.uint8), per_class))


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, the bytes."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array), compresslevel=1))
    return path


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


def write_tiny_folders(root: Path) -> Path:
    """``tiny_folders``' content under ``root`` (the same images every time), for fixtures of wider scope."""
    for split, per_class, seed in (("train", 20, 11), ("val", 5, 12), ("test", 5, 13)):
        labels = balanced_labels(per_class, seed=seed)
        for n, (image, label) in enumerate(zip(draw_digits(labels, seed=seed + 100), labels, strict=True)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{n}.png"), image)
    return root


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """A checkpoint in Lightning's format (what load_classifier reads), without running a Trainer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.fixture
def untrained_checkpoint(tmp_path: Path) -> Path:
    """A digitcls checkpoint (mobilenetv3_small, 32 px, classes 0-9) with seeded random weights."""
    from digitcls.model.module import DigitClassifier

    torch.manual_seed(0)
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(10)], img_size=32)
    return save_checkpoint(model.eval(), tmp_path / "ckpt" / "mobilenetv3_small_e0_0.10000.ckpt")


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def digit_pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of five 28x28 digit PNGs (the tests' generated digits), as `predict` would read them."""
    folder = tmp_path_factory.mktemp("digits")
    for n, image in enumerate(draw_digits(np.array([0, 3, 5, 7, 9]), seed=7)):
        (folder / f"{n}.png").write_bytes(png_bytes(image))
    return folder
