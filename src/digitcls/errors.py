"""User-facing errors: one clear paragraph and a non-zero exit, no traceback.

Anything a user can fix (a bad config value, a missing folder, a broken file) raises
:class:`DigitclsError`. Entry points wrap their ``main`` with :func:`friendly_errors`, which prints
the message and exits with status 2; ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

EXIT_USER_ERROR = 2


class DigitclsError(Exception):
    """An error the user can fix; its message names the key or file and the fix."""


class ConfigError(DigitclsError, ValueError):
    """A config value is invalid."""


class DataError(DigitclsError):
    """Input data (folders, raw files, images) is missing or invalid."""


class BadImageError(DataError):
    """One image file cannot be decoded."""


class CheckpointError(DigitclsError):
    """A checkpoint or weights file is missing, truncated or not ours."""


def full_errors_requested() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def report(error: BaseException) -> None:
    print(f"error: {error}", file=sys.stderr)


def friendly_errors(func: F) -> F:
    """Turn a :class:`DigitclsError` escaping ``func`` into a message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DigitclsError as error:
            if full_errors_requested():
                raise
            report(error)
            sys.exit(EXIT_USER_ERROR)

    return wrapper  # type: ignore[return-value]
