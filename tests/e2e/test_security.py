"""A crafted checkpoint given to a real `python -m digitcls.evaluate` process is refused without running its
code. ``tests/unit/test_security.py`` checks every entry point in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitcls.errors import EXIT_USER_ERROR
from tests.helpers import crafted_checkpoint, run_module


@pytest.mark.slow  # a fresh interpreter: ~10 s alone, a minute on a busy machine
def test_crafted_checkpoint_from_a_real_command_line(tiny_folders: Path, tmp_path: Path) -> None:
    """The same refusal in a real `python -m digitcls.evaluate` process, as a user runs it."""
    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    result = run_module("digitcls.evaluate", [f"model_path={evil}", f"eval_path={tiny_folders / 'test'}",
                                              f"hydra.run.dir={tmp_path / 'hydra'}"], tmp_path, timeout=180)
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "holds Python objects" in result.stderr
    assert not marker.exists()
