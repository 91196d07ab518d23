"""Every bad input a user can give, in one table: exit status 2, one paragraph naming the key or file and
the fix, no traceback.

Each case runs the real Hydra entry point (``python -m digitcls.<command>`` minus the interpreter start-up,
which would cost ~6 s per case): ``sys.argv`` is set and ``main()`` called, so Hydra parses the overrides
exactly as on the command line. ``test_train.py::test_missing_train_path_is_a_message_not_a_traceback`` and
``test_predict.py`` run a few of the same cases in a real subprocess. Bad *images* are skipped with a
warning by default (``test_datamodule.py``, ``test_predict.py``); ``on_bad_image=error`` is in the table.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from digitcls.errors import EXIT_USER_ERROR
from digitcls.model.module import DigitClassifier
from tests.conftest import save_checkpoint
from tests.tiny import TINY_TRAIN

FAST = TINY_TRAIN


@dataclass
class Ctx:
    """What a case may use: the tiny dataset (its own copy), a scratch folder and a valid checkpoint."""

    data: Path
    tmp: Path
    checkpoint: Path

    def train_args(self, *overrides: str) -> list[str]:
        paths = [f"{key}_path={self.data / key}" for key in ("train", "val", "test")]
        return ["+experiment=mbv3", *FAST, *paths, f"output_dir={self.tmp / 'run'}", *overrides]


Setup = Callable[[Ctx], list[str]]


def _empty_dir(ctx: Ctx) -> Path:
    (ctx.tmp / "empty").mkdir(exist_ok=True)
    return ctx.tmp / "empty"


def _val_without_images(ctx: Ctx) -> list[str]:
    for image in (ctx.data / "val").rglob("*.png"):
        image.unlink()
    return ctx.train_args()


def _unknown_val_class(ctx: Ctx) -> list[str]:
    shutil.copytree(ctx.data / "val" / "3", ctx.data / "val" / "11")
    return ctx.train_args()


def _zero_byte_image_with_error_policy(ctx: Ctx) -> list[str]:
    (ctx.data / "train" / "4" / "blank.png").write_bytes(b"")
    return ctx.train_args("on_bad_image=error")


def _text_as_pretrained(ctx: Ctx) -> list[str]:
    (ctx.tmp / "weights.pt").write_text("not weights")
    return ctx.train_args(f"pretrained={ctx.tmp / 'weights.pt'}")


def _pickled_model_as_pretrained(ctx: Ctx) -> list[str]:
    torch.save(torch.nn.Linear(2, 2), ctx.tmp / "model.pt")  # a whole module, not a state dict
    return ctx.train_args(f"pretrained={ctx.tmp / 'model.pt'}")


def _under_a_file(ctx: Ctx, name: str) -> Path:
    """A path below a regular file: no folder can be made there."""
    (ctx.tmp / "a_file").write_text("")
    return ctx.tmp / "a_file" / name


def _truncated_checkpoint(ctx: Ctx) -> Path:
    path = ctx.tmp / "truncated.ckpt"
    path.write_bytes(ctx.checkpoint.read_bytes()[:5000])
    return path


def _three_class_checkpoint(ctx: Ctx) -> Path:
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=["0", "1", "2"], img_size=32)
    return save_checkpoint(model, ctx.tmp / "three.ckpt")


TRAIN, PREDICT, EVALUATE, EXPORT = "digitcls.train", "digitcls.predict", "digitcls.evaluate", "digitcls.export"

# (id, command, argv builder, words the message must contain)
CASES: list[tuple[str, str, Setup, list[str]]] = [
    # --- data folders
    ("missing train_path", TRAIN, lambda c: c.train_args(f"train_path={c.tmp / 'nowhere'}"),
     ["train_path", "nowhere", "make data"]),
    ("empty train_path", TRAIN, lambda c: c.train_args(f"train_path={_empty_dir(c)}"),
     ["empty", "class"]),
    ("split without images", TRAIN, _val_without_images, ["val", "no images"]),
    ("unknown class in val", TRAIN, _unknown_val_class, ["'11'", "val"]),
    ("class_number mismatch", TRAIN, lambda c: c.train_args("class_number=7"),
     ["class_number=7", "10 class folders", "class_number=10"]),
    ("zero-byte image, on_bad_image=error", TRAIN, _zero_byte_image_with_error_policy,
     ["blank.png", "on_bad_image=skip"]),
    # --- model, optimizer, scheduler
    ("unknown model_name", TRAIN, lambda c: c.train_args("model_name=mobilenetv3_tiny"),
     ["model_name", "mobilenetv3_small"]),
    ("unknown optimizer", TRAIN, lambda c: c.train_args("optimizer=Adamm"), ["optimizer", "AdamW"]),
    ("malformed scheduler", TRAIN, lambda c: c.train_args("scheduler=steplr-5-0.5"), ["scheduler", "step-S-G"]),
    # --- numbers that must be positive
    *[
        (f"{key}={value}", TRAIN, lambda c, o=f"{key}={value}": c.train_args(o), [key, "positive"])
        for key, value in [("learning_rate", 0), ("learning_rate", -0.1), ("batch_size", 0), ("batch_size", -8),
                           ("epochs", 0), ("img_size", 0), ("img_size", "[32,-1]")]
    ],
    # --- files the user points at
    ("missing pretrained", TRAIN, lambda c: c.train_args(f"pretrained={c.tmp / 'none.pt'}"),
     ["pretrained", "does not exist", "pretrained=null"]),
    ("pretrained is text", TRAIN, _text_as_pretrained, ["pretrained", "weights.pt"]),
    ("pretrained is a pickled model", TRAIN, _pickled_model_as_pretrained, ["pretrained", "state_dict"]),
    ("missing ckpt_path", TRAIN, lambda c: c.train_args(f"ckpt_path={c.tmp / 'last.ckpt'}"),
     ["ckpt_path", "does not exist"]),
    ("output folder cannot be written", TRAIN, lambda c: c.train_args(f"output_dir={_under_a_file(c, 'run')}"),
     ["output_dir", "a_file", "cannot write"]),
    ("missing model_path", PREDICT, lambda c: [f"model_path={c.tmp / 'none.ckpt'}", f"test_path={c.data / 'test'}"],
     ["model_path", "none.ckpt"]),
    ("truncated model_path", PREDICT,
     lambda c: [f"model_path={_truncated_checkpoint(c)}", f"test_path={c.data / 'test'}"],
     ["truncated.ckpt"]),
    ("model_path of another class count", EVALUATE,
     lambda c: [f"model_path={_three_class_checkpoint(c)}", f"eval_path={c.data / 'test'}",
                f"output_dir={c.tmp / 'eval'}"],
     ["three.ckpt", "'3'"]),
    ("empty predict folder", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={_empty_dir(c)}", f"output={c.tmp / 'pre.csv'}"],
     ["no images", "empty"]),
    ("predict output cannot be written", PREDICT,
     lambda c: [f"model_path={c.checkpoint}", f"test_path={c.data / 'test'}",
                f"output={_under_a_file(c, 'pre.csv')}"],
     ["output", "a_file", "cannot write"]),
    ("export to an unknown format", EXPORT, lambda c: [f"model_path={c.checkpoint}", "format=tflite"],
     ["format", "onnx"]),
]


def run_cli(module: str, argv: list[str], hydra_dir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``python -m <module> <argv>`` in this process; returns the exit status."""
    monkeypatch.setattr(sys, "argv", [module, *argv, f"hydra.run.dir={hydra_dir}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main()
    return exited.value.code


@pytest.mark.parametrize(("command", "setup", "words"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message(
    command: str,
    setup: Setup,
    words: list[str],
    tiny_folders: Path,
    untrained_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = setup(Ctx(tiny_folders, tmp_path, untrained_checkpoint))
    status = run_cli(command, argv, tmp_path / "hydra", monkeypatch)

    captured = capsys.readouterr()
    assert status == EXIT_USER_ERROR, captured.err[-2000:]
    message = captured.err.strip().splitlines()[-1]
    assert message.startswith("error: "), captured.err[-2000:]
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in captured.out + captured.err


def test_full_error_env_shows_the_traceback(tiny_folders: Path, tmp_path: Path, monkeypatch) -> None:
    """HYDRA_FULL_ERROR=1 is the way to the traceback: the error is raised, not turned into a message."""
    from digitcls.errors import ConfigError

    ctx = Ctx(tiny_folders, tmp_path, tmp_path / "unused.ckpt")
    monkeypatch.setattr(sys, "argv", [TRAIN, *ctx.train_args("optimizer=Adamm"), f"hydra.run.dir={tmp_path}"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="optimizer"):
        importlib.import_module(TRAIN).main()


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_ckpt(
    tiny_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Epoch 0 trains and saves last.ckpt; then the training loss turns NaN, as a diverging run's does (here
    forced: the loss module returns NaN from the first training step of epoch 1). The run stops with a
    message naming epoch 1 and its step, and epoch 0's last.ckpt still holds finite weights."""
    from digitcls.model.loss import LabelSmoothingCrossEntropy

    steps_per_epoch = 200 // 16 + 1  # tiny_folders: 200 training images, batch_size=16
    real_forward = LabelSmoothingCrossEntropy.forward
    training_calls = 0

    def diverging_forward(self, *args, **kwargs):
        nonlocal training_calls
        loss = real_forward(self, *args, **kwargs)
        if torch.is_grad_enabled():  # training steps only, not validation
            training_calls += 1
            if training_calls > steps_per_epoch:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(LabelSmoothingCrossEntropy, "forward", diverging_forward)
    ctx = Ctx(tiny_folders, tmp_path, tmp_path / "unused.ckpt")
    status = run_cli(TRAIN, ctx.train_args("epochs=3", "scheduler=none"), tmp_path / "hydra", monkeypatch)

    err = capsys.readouterr().err
    assert status == EXIT_USER_ERROR, err[-2000:]
    message = err.strip().splitlines()[-1]
    assert f"training loss became nan at epoch 1, step {steps_per_epoch}" in message, message
    assert "learning_rate" in message and "last.ckpt" in message
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0 and saved["global_step"] == steps_per_epoch
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
