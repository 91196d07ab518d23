"""The one wrapper every entry point's ``main`` goes through (train, evaluate, predict, export, serve,
summarize, checkpoints, prepare): a user error becomes one paragraph on stderr and exit status 2, Ctrl-C
exit status 130, neither with a traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from digitcls.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, DigitclsError

F = TypeVar("F", bound=Callable)


def in_multirun(config: DictConfig | None = None) -> bool:
    """Inside a job of a Hydra multirun (``-m``)? ``config``: the job's whole config, as Hydra's callbacks
    receive it; without it, the config of the job running now (False outside Hydra)."""
    if config is not None:
        return config.hydra.mode == RunMode.MULTIRUN
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def friendly_errors(func: F) -> F:
    """Wrap an entry point. In a Hydra multirun a user error propagates instead, so Hydra records that job
    as failed and the sweep goes on; Ctrl-C ends the whole sweep."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DigitclsError as error:
            if in_multirun() or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]
