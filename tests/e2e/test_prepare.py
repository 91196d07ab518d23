"""`make data` on a real command line: offline with no raw files, a message naming both ways out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_cli_offline_without_files_exits_with_message_not_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitcls.data.prepare",
            "--raw-dir",
            str(tmp_path / "empty"),
            "--out-dir",
            str(tmp_path / "out"),
            "--no-download",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert "error:" in result.stderr and "MNIST/raw" in result.stderr and "network" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
