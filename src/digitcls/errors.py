"""User-facing errors: one clear paragraph and a non-zero exit, no traceback.

Anything a user can fix (a bad config value, a missing folder, a broken file) raises
:class:`DigitclsError`; :func:`digitcls.cli.friendly_errors`, around every entry point, prints it and
exits with status 2.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # what shells report for a program stopped by Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # stopped by SIGTERM (128 + 15): what a cluster sends before pre-emption


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
