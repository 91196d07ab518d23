"""Atomic file writes: every output digitcls writes appears whole or not at all (docs/troubleshooting.md).

Write into a temporary file beside the target (same folder, so the same filesystem), flush it to disk, then
``os.replace`` it over the target: whatever kills the writer (Ctrl-C, SIGKILL, a full disk), a reader sees the
old file or the new one. On any failure the temporary file is removed and the old file is left as it was.

Every function that writes through :func:`atomic_path` is registered with :func:`writer`:
``tests/unit/test_atomic_writes.py`` interrupts each registered writer, and fails on any file write in
``src/digitcls`` that is not inside a registered writer's ``atomic_path`` block.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])

# "module.qualname" -> function, filled as modules are imported
WRITERS: dict[str, Callable[..., Any]] = {}


def writer(func: F) -> F:
    """Register ``func`` as a digitcls file writer (it must write through :func:`atomic_path`)."""
    WRITERS[f"{func.__module__}.{func.__qualname__}"] = func
    return func


def _publish(tmp: Path, path: Path, durable: bool) -> None:
    if durable:
        with open(tmp, "rb") as handle:  # on disk before the rename: a crash cannot leave an empty file
            os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on leaving the block it replaces ``path``.

    ``durable=False`` skips the flush to disk (~20 ms a file on a busy disk): readers and interruptions still
    never see half a file, but a power cut may leave an empty one, so it is only for data that is cheap to
    make again (the notebook's drawn digits).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        _publish(tmp, path, durable)
    finally:
        tmp.unlink(missing_ok=True)


@writer
def write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


@writer
def write_csv_atomically(frame: pd.DataFrame, path: str | Path) -> Path:
    """Always valid UTF-8: a file name that is not (undecodable bytes, kept by Python as surrogates) is written
    with backslash escapes instead of failing the whole file. Commas, quotes and newlines in names are
    quoted, so pandas reads every name back as it was."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f", errors="backslashreplace")
    return Path(path)
