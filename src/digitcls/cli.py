"""What every Hydra entry point shares: user errors become a message and exit status 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from digitcls.errors import EXIT_USER_ERROR, DigitclsError, full_errors_requested, report

T = TypeVar("T")


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a task; in a single run, a user error becomes a message and exit status 2. In a multirun
    it propagates so Hydra records that job as failed and the sweep goes on."""
    try:
        return task(cfg)
    except DigitclsError as error:
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if multirun or full_errors_requested():
            raise
        report(error)
        raise SystemExit(EXIT_USER_ERROR) from None



