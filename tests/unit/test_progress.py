"""Progress: rich bars in a terminal, plain lines elsewhere; `make data` and `make predict` show a bar."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel

from digitcls.data.prepare import prepare_dataset
from digitcls.inference import load_predictor
from digitcls.predict import label_folder
from digitcls.progress import PlainProgressBar, progress_bar
from digitcls.train import build_callbacks
from tests.helpers import TINY_TRAIN, compose_train


def test_a_terminal_gets_rich_bars_and_a_pipe_plain_lines() -> None:
    leader, follower = os.openpty()  # a real pseudo-terminal, as a shell gives
    with os.fdopen(follower, "w") as terminal:
        assert isinstance(progress_bar(terminal), RichProgressBar)
    os.close(leader)
    reader, writer = os.pipe()  # what CI, `| tee` and a sweep's job log give
    with os.fdopen(writer, "w") as pipe:
        assert isinstance(progress_bar(pipe), PlainProgressBar)
    os.close(reader)


@pytest.mark.parametrize(("enabled", "expected"), [("true", [PlainProgressBar]), ("false", [])])
def test_training_callbacks_follow_enable_progress_bar(
    enabled: str, expected: list[type], tmp_path: Path
) -> None:
    cfg = compose_train([*TINY_TRAIN, f"trainer.enable_progress_bar={enabled}", f"output_dir={tmp_path}"])
    _, callbacks = build_callbacks(cfg, tmp_path)  # pytest captures stdout: not a terminal
    assert [type(c) for c in callbacks if type(c) in (PlainProgressBar, RichProgressBar)] == expected


class ValAccModel(BoringModel):
    """Lightning's BoringModel, logging a val_acc as digitcls's module does."""

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict:
        out = super().validation_step(batch, batch_idx)
        self.log("val_acc", 0.5)
        return out


def test_plain_lines_give_position_time_left_and_epoch_metrics(tmp_path: Path) -> None:
    stream = io.StringIO()
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=4, limit_val_batches=2, logger=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[PlainProgressBar(every_s=0, stream=stream)], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(ValAccModel())
    lines = stream.getvalue().splitlines()
    batch_lines = [line for line in lines if " batch " in line]
    assert len(batch_lines) == 8  # every_s=0: a line per batch, 4 batches x 2 epochs
    assert re.match(r"epoch 1/2  batch 3/4 \(75%, \d+:\d\d:\d\d spent, \d+:\d\d:\d\d left\)", batch_lines[2])
    epoch_lines = [line for line in lines if " done in " in line]
    assert (
        len(epoch_lines) == 2
        and epoch_lines[1].startswith("epoch 2/2 done in")
        and "val_acc 0.5" in epoch_lines[1]
    )
    assert all("\r" not in line and "\x1b" not in line for line in lines)  # no redraws, no colour codes


def test_prepare_and_predict_report_progress(
    tiny_idx_dir: Path, tmp_path: Path, untrained_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare_dataset(tiny_idx_dir, tmp_path / "data", val_size=50)
    out = capsys.readouterr().out
    assert all(re.search(rf"writing {split}\s.*100%", out) for split in ("train", "val", "test")), out
    label_folder(load_predictor(untrained_checkpoint), tmp_path / "data" / "test", batch_size=16)
    assert re.search(r"labelling\s.*100%", capsys.readouterr().out)
