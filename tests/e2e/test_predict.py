"""`make predict` on a real command line: a foreign or broken checkpoint is a message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_module


@pytest.mark.parametrize("kind", ["plain_state_dict", "truncated", "text"])
def test_foreign_or_broken_checkpoint_is_a_message_not_a_traceback(
    kind: str, tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    import torch

    bad = tmp_path / f"{kind}.ckpt"
    if kind == "plain_state_dict":
        torch.save(torch.load(untrained_checkpoint, weights_only=False)["state_dict"], bad)
    elif kind == "truncated":
        bad.write_bytes(untrained_checkpoint.read_bytes()[:100])
    else:
        bad.write_text("hello")
    result = run_module("digitcls.predict", [f"model_path={bad}", f"test_path={tiny_folders / 'test'}"], tmp_path)
    assert result.returncode == 2
    assert "model_path" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "pre.csv").exists()
