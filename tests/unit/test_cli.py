"""The one entry-point wrapper: user error -> one paragraph and exit 2, Ctrl-C -> exit 130, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitcls import checkpoints, summarize
from digitcls.cli import friendly_errors
from digitcls.data import prepare
from digitcls.errors import ConfigError


def fails_with(error: BaseException):
    @friendly_errors
    def main() -> None:
        raise error

    return main


def test_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        fails_with(ConfigError("epochs: must be a positive whole number, got 0; e.g. epochs=10."))()
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: epochs: must be a positive whole number, got 0; e.g. epochs=10.\n"


def test_ctrl_c_is_exit_130_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        fails_with(KeyboardInterrupt())()
    assert caught.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_full_errors_and_bugs_keep_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        fails_with(RuntimeError("a bug"))()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError):
        fails_with(ConfigError("x"))()


@pytest.mark.parametrize(
    ("main", "argv", "words"),
    [
        (summarize.main, ["{tmp}/no-sweep"], ["no-sweep"]),
        (checkpoints.main, ["{tmp}/missing.ckpt", "{tmp}/out.ckpt"], ["missing.ckpt"]),
        (prepare.main, ["--raw-dir", "{tmp}/raw", "--out-dir", "{tmp}/out", "--no-download"], ["MNIST/raw"]),
    ],
    ids=["summarize", "checkpoints", "prepare"],
)
def test_plain_entry_points_are_wrapped(
    main, argv: list[str], words: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([arg.format(tmp=tmp_path) for arg in argv])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert all(word in err for word in words)
