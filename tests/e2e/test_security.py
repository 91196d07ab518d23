"""A crafted checkpoint given to a real `python -m digitcls.evaluate` process is refused without running its
code. ``tests/unit/test_security.py`` checks every entry point in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from digitcls.errors import EXIT_USER_ERROR
from tests.tiny import cli_env
from tests.unit.test_security import EVALUATE, crafted_checkpoint


@pytest.mark.slow  # a fresh interpreter: ~10 s alone, a minute on a busy machine
def test_crafted_checkpoint_from_a_real_command_line(tiny_folders: Path, tmp_path: Path) -> None:
    """The same refusal in a real `python -m digitcls.evaluate` process, as a user runs it."""
    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    result = subprocess.run(
        [sys.executable, "-m", EVALUATE, f"model_path={evil}", f"eval_path={tiny_folders / 'test'}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "holds Python objects" in result.stderr
    assert not marker.exists()
