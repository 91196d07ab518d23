"""Which checkpoint ``resume=true`` takes: this run folder's own ``last.ckpt``, else the newest one under
outputs/; ``ckpt_path`` wins over both (killing and resuming a real run: tests/e2e/test_resume_kill.py)."""

from __future__ import annotations

import os
from pathlib import Path

from digitcls.runs import resume_checkpoint


def _touch_ckpt(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def test_resume_true_prefers_this_run_then_the_newest_last_ckpt(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    older = _touch_ckpt(tmp_path / "outputs" / "a" / "checkpoints" / "last.ckpt", 1_000)
    newer = _touch_ckpt(tmp_path / "outputs" / "b" / "checkpoints" / "last.ckpt", 2_000)
    assert resume_checkpoint(None, True, tmp_path / "outputs" / "a") == older  # this run folder's own
    assert resume_checkpoint(None, True, tmp_path / "outputs" / "new").resolve() == newer  # else the newest
    assert resume_checkpoint(None, False, tmp_path / "outputs" / "a") is None
    assert resume_checkpoint(str(older), False, tmp_path / "elsewhere") == older  # ckpt_path wins
