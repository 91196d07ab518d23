"""Small settings and runners shared by the tests that train: one epoch of MobileNetV3-small at 32 px on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import digitcls

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


def compose_train(overrides: list[str]) -> DictConfig:
    """The config `python -m digitcls.train +experiment=mbv3 <overrides>` would run with."""
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["+experiment=mbv3", *overrides])


def cli_env() -> dict[str, str]:
    """The environment for a digitcls command in a subprocess: it imports the same digitcls as the tests,
    and shows errors as a user sees them (no HYDRA_FULL_ERROR)."""
    src = str(Path(digitcls.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_train(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m digitcls.train <args>` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "digitcls.train", *args],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
