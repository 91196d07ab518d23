"""Start `make serve` on a free local port for a test module, and a checkpoint whose answers differ per image."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import torch

from tests.conftest import draw_digits, save_checkpoint
from tests.tiny import cli_env

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240  # a model worker imports torch in a fresh process: slow on a busy 2-core machine


def varied_checkpoint(path: Path) -> Path:
    """An untrained mobilenetv3_small (32 px, classes 0-9) whose answers differ from image to image.

    Freshly initialised, its BatchNorm statistics (mean 0, variance 1) shrink activations to nothing, so
    every image gets 0.1 for every class and labels are ties. Recalibrating the statistics on generated
    digits (forward passes in train mode, no gradient step) makes its outputs depend on the image; a
    larger last layer makes them far from ties."""
    from digitcls.model.module import DigitClassifier

    torch.manual_seed(0)
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(10)], img_size=32)
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
        _wait_until_healthy(url, process, log)
        yield Served(url, model_path, log)
    finally:
        _stop(process)


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).text == "ok":
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not healthy after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C to make and the server (its own process group), then a hard kill of that group if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
