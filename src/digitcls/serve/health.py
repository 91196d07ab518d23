"""Waiting for a started server to answer ``GET /health``: what the serve tests and ``bench/bench_serve.py``
do after starting ``python -m digitcls.serve`` in a child process."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Return once ``GET <url>/health`` answers ``ok``.

    Args:
        url: the server's base address, e.g. ``http://127.0.0.1:8000``.
        process: the server's process; its exit ends the wait at once.
        log: the file the server writes to; its tail goes into the error.
        timeout_s: how long to wait (a model worker imports torch in a fresh process: slow on a busy machine).

    Raises:
        RuntimeError: the process exited, or ``timeout_s`` passed without an ``ok``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:  # not listening yet, or not ready (an HTTP error status)
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server was not healthy after {timeout_s:g} s:\n{log.read_text()[-4000:]}")
