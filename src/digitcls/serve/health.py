"""Waiting for a started server to answer ``GET /health``: what the serve tests and ``bench/bench_serve.py``
do after starting ``python -m digitcls.serve`` in a child process."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Return once ``GET <url>/health`` answers ``ok``; raise ``RuntimeError`` with the tail of ``log`` (the
    server's output) if ``process`` exits first or ``timeout_s`` passes (a model worker imports torch in a
    fresh process: slow on a busy machine)."""
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
