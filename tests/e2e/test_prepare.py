"""`make data` on a real command line: offline with no raw files, a message naming both ways out."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_module


def test_cli_offline_without_files_exits_with_message_not_traceback(tmp_path: Path) -> None:
    result = run_module("digitcls.data.prepare", ["--raw-dir", str(tmp_path / "empty"), "--out-dir",
                                                  str(tmp_path / "out"), "--no-download"], tmp_path, timeout=60)
    assert result.returncode != 0
    assert "error:" in result.stderr and "MNIST/raw" in result.stderr and "network" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
