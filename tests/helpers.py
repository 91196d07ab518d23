"""Every helper the tests share, in one place (fixtures are in conftest.py; no test module imports another).

- generated data: digits drawn with OpenCV, IDX bytes, image folders, PNGs, a pixel bomb;
- checkpoints: saved without a Trainer, one whose answers differ per image;
- configs: the tiny training settings and the composed config of any command;
- commands: in this process (``run_in_process``) or in a child process (``run_module``, ``run_train``), and
  ``make serve`` on a free port (``serving``);
- the notebook's path and its figure cells;
- real MNIST: where it is and the marker that skips a test without it.
"""

from __future__ import annotations

import gzip
import importlib
import os
import signal
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import digitcls
from digitcls.serve.health import wait_until_healthy

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------ generated data

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


def render_digit(digit: int, canvas: tuple[int, int] = (200, 300), at: tuple[int, int] = (40, 170),
                 thickness: int = 16, jpeg: bool = True) -> np.ndarray:
    """Dark ink on light paper, off-centre, as a phone photo of a digit would be."""
    photo = np.full((*canvas, 3), (225, 230, 235), np.uint8)
    cv2.putText(photo, str(digit), at, cv2.FONT_HERSHEY_SIMPLEX, 5, (30, 25, 20), thickness, cv2.LINE_AA)
    if jpeg:
        photo = cv2.imdecode(cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
    return photo


def balanced_labels(per_class: int, seed: int, classes: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes, dtype=np.uint8), per_class))


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, the bytes."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    path.write_bytes(gzip.compress(idx_bytes(array), compresslevel=1))
    return path


def write_tiny_folders(root: Path) -> Path:
    """``<root>/{train,val,test}/<digit>/<n>.png``: 200 / 50 / 50 28x28 grayscale PNGs, the same every time."""
    for split, per_class, seed in (("train", 20, 11), ("val", 5, 12), ("test", 5, 13)):
        labels = balanced_labels(per_class, seed=seed)
        for n, (image, label) in enumerate(zip(draw_digits(labels, seed=seed + 100), labels, strict=True)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{n}.png"), image)
    return root


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def pixel_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG of a few hundred bytes whose header declares width x height grey pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # the first rows; the rest would decompress from more
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """A checkpoint in Lightning's format (what load_classifier reads), without running a Trainer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def varied_checkpoint(path: Path) -> Path:
    """An untrained mobilenetv3_small (32 px, classes 0-9) whose answers differ from image to image.

    Freshly initialised, its BatchNorm statistics (mean 0, variance 1) shrink activations to nothing, so
    every image gets 0.1 for every class and labels are ties. Recalibrating the statistics on generated
    digits (forward passes in train mode, no gradient step) makes its outputs depend on the image; a
    larger last layer makes them far from ties."""
    from digitcls.model.module import DigitClassifier

    torch.manual_seed(0)
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(10)], img_size=(32, 32))
    digits = torch.from_numpy(draw_digits(np.arange(64) % 10, seed=5))[:, None].expand(-1, 3, -1, -1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        model(torch.nn.functional.interpolate(digits.float(), size=32).to(torch.uint8))
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(30)  # surer answers
    return save_checkpoint(model.eval(), path)


def trained_checkpoint(path: Path, steps: int = 30, seed: int = 0) -> Path:
    """mobilenetv3_small (32 px, classes 0-9) after ``steps`` AdamW steps on 200 generated digits (not the
    ones ``tiny_folders`` holds): a few seconds on one core, and its answers depend on the image — well
    above chance on ``tiny_folders``' test split, most digits named, a mirrored digit answered differently.

    The images go through the dataset's own conversion (grey -> RGB, ``resize``, C x H x W), so a path
    that prepares images otherwise for inference shows as a lower accuracy. The BatchNorm statistics are
    recomputed at the end over the whole training set (30 steps are too few for the running averages)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: a second thread only waits, 20x slower on a busy machine
    try:
        # a session fixture is built before the per-test autouse fixture that turns autograd back on
        with torch.enable_grad():
            return save_checkpoint(_train_a_few_steps(steps, seed), path)
    finally:
        torch.set_num_threads(threads)


def _train_a_few_steps(steps: int, seed: int) -> torch.nn.Module:
    from digitcls.data.images import resize, to_chw_tensor
    from digitcls.model.module import DigitClassifier

    torch.manual_seed(seed)
    labels = balanced_labels(20, seed=seed + 21)
    grey = draw_digits(labels, seed=seed + 22)
    images = torch.stack([to_chw_tensor(resize(cv2.cvtColor(g, cv2.COLOR_GRAY2RGB), (32, 32))) for g in grey])
    targets = torch.from_numpy(labels).long()
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(10)], img_size=(32, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = torch.randperm(len(images))[:32]
        loss = torch.nn.functional.cross_entropy(model(images[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the pass below
    with torch.no_grad():
        model(images)
    return model.eval()


# Between onnxruntime, TorchScript and torch the same model and pixels differ by float32 rounding (~1e-6);
# a preprocessing difference (a mirrored image, no /255, another resize) moves probabilities by > 0.01.
PROBABILITY_TOLERANCE = 1e-4


def reference_answers(checkpoint: Path, root: Path, image_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """(label, probability of that label) per image: torch on ``checkpoint``, each file read as the
    training dataset reads it (``load_input``) — what predict, evaluate and the exports must match."""
    from digitcls.data.images import load_input, to_chw_tensor
    from digitcls.inference import load_predictor

    predictor = load_predictor(checkpoint, backend="torch")
    images = torch.stack([to_chw_tensor(load_input(root / image_id, predictor.img_size)) for image_id in image_ids])
    probabilities = predictor.probabilities(images)
    best, index = probabilities.max(dim=1)
    return [predictor.class_names[i] for i in index.tolist()], best.numpy()


def assert_same_answers(labels: list[str], confidences: np.ndarray, reference: tuple[list[str], np.ndarray],
                        at_least_labels: int = 5) -> None:
    """Image by image: the same label and the same confidence (within PROBABILITY_TOLERANCE) as
    ``reference``, on answers that vary (at least ``at_least_labels`` distinct labels; a model that
    ignores its input would agree with any preprocessing)."""
    reference_labels, reference_confidences = reference
    assert len(set(reference_labels)) >= at_least_labels, f"the model barely depends on the image: {reference_labels}"
    differ = [n for n, (a, b) in enumerate(zip(labels, reference_labels, strict=True)) if a != b]
    assert not differ, f"{len(differ)} of {len(labels)} labels differ, e.g. image {differ[0]}"
    assert np.allclose(confidences, reference_confidences, atol=PROBABILITY_TOLERANCE, rtol=0), (
        f"largest confidence difference {np.abs(np.asarray(confidences) - reference_confidences).max():.2g}")


class _Payload:
    """Unpickling this runs ``exec(code)``: what a malicious checkpoint carries."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A complete digitcls checkpoint (state_dict, hyperparameters) plus an object that creates ``marker``
    when unpickled: loaded with weights_only=False it would work *and* run the code."""
    from digitcls.model.module import DigitClassifier

    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(10)], img_size=(32, 32))
    payload = _Payload(f"import pathlib; pathlib.Path({str(marker)!r}).touch()")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": 0,
                "global_step": 0, "loops": {}, "callbacks": {"payload": payload}}, path)
    return path


# ------------------------------------------------------------------------------------------ configs

# One epoch of MobileNetV3-small at 32 px on CPU: what the tests that train run.
TINY_TRAIN = [
    "model_name=mobilenetv3_small",
    "epochs=1",
    "img_size=32",
    "batch_size=16",
    "num_workers=0",
    "data_cache=false",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.enable_progress_bar=false",
]


def compose_config(command: str, overrides: list[str]) -> DictConfig:
    """The config `python -m digitcls.<command> <overrides>` composes (train: with +experiment=mbv3)."""
    if command == "train":
        return compose_train(overrides)
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name=command, overrides=overrides)


def compose_train(overrides: list[str]) -> DictConfig:
    """The config `python -m digitcls.train +experiment=mbv3 <overrides>` would run with."""
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["+experiment=mbv3", *overrides])


def data_paths(root: Path) -> list[str]:
    """``train_path``, ``val_path`` and ``test_path`` overrides for a prepared dataset under ``root``."""
    return [f"{split}_path={root / split}" for split in ("train", "val", "test")]


# ------------------------------------------------------------------------------------------ commands


def run_in_process(module: str, argv: list[str], hydra_dir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``python -m <module> <argv>`` in this process (Hydra parses ``sys.argv`` as on a command line, without
    the interpreter's start-up); returns the exit status."""
    monkeypatch.setattr(sys, "argv", [module, *argv, f"hydra.run.dir={hydra_dir}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main()
    return exited.value.code


def cli_env() -> dict[str, str]:
    """The environment for a digitcls command in a subprocess: it imports the same digitcls as the tests,
    and shows errors as a user sees them (no HYDRA_FULL_ERROR)."""
    src = str(Path(digitcls.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_module(module: str, args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_train(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m digitcls.train <args>` in a subprocess, as a user runs it."""
    return run_module("digitcls.train", args, cwd, timeout)


def run_ok(module: str, args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``run_module``, asserted to exit 0 (the message shows the ends of its output otherwise)."""
    result = run_module(module, args, cwd, timeout)
    assert result.returncode == 0, f"{module} {args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


SERVE_START_TIMEOUT_S = 240  # a model worker imports torch in a fresh process: slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Served:
    url: str
    model_path: Path
    log: Path


@contextmanager
def serving(model_path: Path, log: Path, overrides: list[str]) -> Iterator[Served]:
    """`make serve MODEL=<model_path> ARGS="port=<free> <overrides>"` until the block ends (Ctrl-C, as a user stops it)."""
    port = free_port()
    command = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "serve", f"PYTHON={sys.executable}",
               f"MODEL={model_path}", f"ARGS=port={port} {' '.join(overrides)}"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=log.parent, env=cli_env(), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log, SERVE_START_TIMEOUT_S)
        yield Served(url, model_path, log)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C to make and the server (its own process group), then a hard kill of that group if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# ------------------------------------------------------------------------------------------ the notebook

NOTEBOOK = REPO / "notebooks" / "01_explore_mnist.ipynb"
# code cells (by id) that must draw a picture
FIGURE_CELLS = ("class-balance", "sample-grid", "curves", "confusion", "mistakes", "sweep", "own-image")

# ------------------------------------------------------------------------------------------ real MNIST

MNIST = REPO.parent / "shared" / "data" / "mnist"
MNIST_FILES = list(IDX_FILES.values())
needs_real_mnist = pytest.mark.skipif(
    not all((MNIST / name).is_file() for name in MNIST_FILES), reason=f"real MNIST IDX files not found in {MNIST}"
)
