"""Ctrl-C in-process with a real Trainer: stop at the batch boundary, last.ckpt saved by digitcls's
interrupt callback, exit status 130; other errors save nothing. (Subprocess resume: test_resume_kill.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from digitcls.callbacks.checkpoint import BestCheckpoint
from digitcls.callbacks.interrupt import InterruptCheckpoint

STEPS_PER_EPOCH = 4


class SignalsItself(L.LightningModule):
    """Sends itself ``sigints`` SIGINTs (as a terminal's Ctrl-C does) or raises, at the given global step."""

    def __init__(
        self, sigint_at: int | None = None, sigints: int = 1, fail_at: int | None = None, sigterm_at: int | None = None
    ) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.sigint_at, self.sigints, self.fail_at, self.sigterm_at = sigint_at, sigints, fail_at, sigterm_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.sigint_at:
            for _ in range(self.sigints):
                os.kill(os.getpid(), signal.SIGINT)
        if self.global_step == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.global_step == self.fail_at:
            raise RuntimeError("a bug, not an interruption")
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx) -> None:
        self.log("val_acc", 0.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(module: L.LightningModule, folder: Path) -> BestCheckpoint:
    checkpoint = BestCheckpoint(folder, "net", save_best_only=True, save_one_only=True)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(STEPS_PER_EPOCH, 2)), batch_size=1)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False,
                        callbacks=[checkpoint, InterruptCheckpoint(checkpoint)], enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=folder)  # fmt: skip
    trainer.fit(module, data, data)
    return checkpoint


def test_ctrl_c_saves_at_the_batch_boundary_and_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    previous_handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as caught:
        fit(SignalsItself(sigint_at=STEPS_PER_EPOCH + 1), tmp_path)  # in epoch 1's second batch
    assert caught.value.code == 130
    assert signal.getsignal(signal.SIGINT) == previous_handler  # the handler is put back
    last = tmp_path / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == STEPS_PER_EPOCH + 2  # that batch finished, no further one started
    state = next(value for key, value in saved["callbacks"].items() if key.startswith("BestCheckpoint"))
    assert state["last_model_path"] == str(last)  # a resumed run keeps rewriting this file
    assert f"interrupted: saved {last}; resume with resume=true" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))


def test_second_ctrl_c_stops_without_saving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        fit(SignalsItself(sigint_at=STEPS_PER_EPOCH + 1), tmp_path)
    first = torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:  # the second one stops at once, before the batch ends
        fit(SignalsItself(sigint_at=1, sigints=2), tmp_path)
    assert caught.value.code == 130
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == first  # untouched
    assert "interrupted again: stopped without saving" in capsys.readouterr().err


def test_other_errors_leave_last_ckpt_as_it_was(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        fit(SignalsItself(fail_at=STEPS_PER_EPOCH + 1), tmp_path)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == STEPS_PER_EPOCH  # epoch 0's


class RecordsFirstStep(SignalsItself):
    def training_step(self, batch, batch_idx):
        self.first_step = getattr(self, "first_step", self.global_step)
        return super().training_step(batch, batch_idx)


def test_a_new_fit_beside_a_saved_last_ckpt_starts_from_scratch(tmp_path: Path) -> None:
    # with Lightning's OnExceptionCheckpoint among the callbacks, fit(ckpt_path=None) would resume from it
    with pytest.raises(SystemExit):
        fit(SignalsItself(sigint_at=STEPS_PER_EPOCH + 1), tmp_path)
    assert (tmp_path / "last.ckpt").is_file()
    fresh = RecordsFirstStep()
    fit(fresh, tmp_path)
    assert fresh.first_step == 0


def test_sigterm_saves_at_the_batch_boundary_and_exits_143(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGTERM (what SLURM sends before pre-emption): Lightning stops after the batch, last.ckpt is saved as for
    Ctrl-C, and the status says the run was terminated (143), not finished (Lightning alone exits 0)."""
    with pytest.raises(SystemExit) as caught:
        fit(SignalsItself(sigterm_at=STEPS_PER_EPOCH + 1), tmp_path)  # in epoch 1's second batch
    assert caught.value.code == 143
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == STEPS_PER_EPOCH + 2  # that batch finished, no further one started
    assert f"interrupted: saved {tmp_path / 'last.ckpt'}; resume with resume=true" in capsys.readouterr().err
