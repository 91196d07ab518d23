"""`make predict` on a real command line: pre.csv holds the model's answer for each image; a broken
checkpoint is a message, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from digitcls.errors import EXIT_USER_ERROR
from tests.helpers import assert_same_answers, reference_answers, run_module, run_ok


def test_pre_csv_holds_the_models_answer_for_each_image(tiny_folders: Path, trained: Path, tmp_path: Path) -> None:
    """The whole command (its default backend, its decoding threads, the CSV) against torch image by image."""
    test = tiny_folders / "test"
    run_ok("digitcls.predict", [f"model_path={trained}", f"test_path={test}", "grid_output=null"], tmp_path)
    written = pd.read_csv(tmp_path / "pre.csv", dtype={"label": str})
    assert sorted(written.image_id) == sorted(str(p.relative_to(test)) for p in test.rglob("*.png"))
    assert_same_answers(written.label.tolist(), written.confidence.to_numpy(),
                        reference_answers(trained, test, written.image_id.tolist()))


def test_a_broken_checkpoint_is_a_message_not_a_traceback(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    """What a user's shell sees: status 2, an `error:` line naming the file, no traceback, no pre.csv. The
    other unusable checkpoints (plain weights, a text file, a missing file) give the same in process:
    tests/unit/test_bad_inputs.py."""
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(untrained_checkpoint.read_bytes()[:100])
    result = run_module("digitcls.predict", [f"model_path={bad}", f"test_path={tiny_folders / 'test'}"], tmp_path)
    assert result.returncode == EXIT_USER_ERROR
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: model_path") and str(bad) in message, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "pre.csv").exists()
