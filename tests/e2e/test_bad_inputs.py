"""Bad input on a real command line: the user's shell sees exit status 2, one `error:` line, no traceback.
``tests/unit/test_bad_inputs.py`` holds the whole table of bad inputs, run in-process."""

from __future__ import annotations

from pathlib import Path

from digitcls.errors import EXIT_USER_ERROR
from tests.helpers import run_train


def test_a_schema_error_in_a_real_subprocess_exits_2_without_traceback(tmp_path: Path) -> None:
    """What the in-process tables assume: a user's shell sees status 2, one `error:` line, no traceback.
    (test_train.py and test_predict.py run data and file errors the same way.)"""
    result = run_train(["+experiment=mbv3", "epochs=2.5", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: epochs: got 2.5"), result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
