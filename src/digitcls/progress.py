"""Training progress a person can read: Lightning's RichProgressBar (bars with time left) in a terminal,
and plain, periodic lines where output is not a terminal (CI logs, sweep job logs, `| tee`), where a
redrawn bar turns into noise or into nothing at all."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar


def progress_bar(stream: TextIO | None = None) -> ProgressBar:
    """RichProgressBar when ``stream`` (default stdout) is a terminal, else PlainProgressBar."""
    return RichProgressBar() if (stream or sys.stdout).isatty() else PlainProgressBar(stream=stream)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _metrics_text(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def _epoch(trainer: L.Trainer) -> str:
    return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"


class PlainProgressBar(ProgressBar):
    """One line every ``every_s`` seconds while training (epoch, batch, percent, time spent and left, the
    progress-bar metrics), and one line per finished epoch with its validation metrics."""

    def __init__(self, every_s: float = 30.0, stream: TextIO | None = None) -> None:
        super().__init__()
        self.every_s = every_s
        self.stream = stream  # None: sys.stdout at print time (a stream does not pickle for ddp_spawn)
        self._enabled = True
        self._epoch_started = 0.0
        self._last_line = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._enabled:
            print(*args, file=self.stream or sys.stdout, flush=True, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = self._last_line = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        if now - self._last_line < self.every_s:
            return
        self._last_line = now
        done, total = batch_idx + 1, self.total_train_batches
        spent = now - self._epoch_started
        where = f"batch {done}/{total}"
        if isinstance(total, int) and total > 0:
            left = spent / done * (total - done)
            where += f" ({done / total:.0%}, {_duration(spent)} spent, {_duration(left)} left)"
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the CSV logger's version: always empty here
        self.print(f"{_epoch(trainer)}  {where}  {_metrics_text(metrics)}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val_", "train_"))}
        took = _duration(time.monotonic() - self._epoch_started)
        self.print(f"{_epoch(trainer)} done in {took}  {_metrics_text(metrics)}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test_")}
        self.print(f"test  {_metrics_text(metrics)}")


class EpochLines(L.Callback):
    """With the progress bar off (``trainer.enable_progress_bar=false``): one line per epoch on stdout,

        epoch 3/15  train_loss 0.4123  val_acc 0.9876  elapsed 0:01:02  images/s 850

    ``train_loss`` is the mean over the epoch's training images, ``elapsed`` the time since training started,
    ``images/s`` the epoch's training images over the time spent training them (validation not counted)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream  # None: sys.stdout at print time (a stream does not pickle for ddp_spawn)
        self._fit_started = self._epoch_started = self._trained_s = 0.0
        self._images = 0
        self._loss_sum = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_started = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.monotonic()
        self._images, self._loss_sum, self._trained_s = 0, 0.0, 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        images = len(batch[1])
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._images += images
        self._loss_sum += float(loss) * images
        self._trained_s = time.monotonic() - self._epoch_started

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self._images:
            return
        val_acc = trainer.callback_metrics.get("val_acc")
        parts = [
            _epoch(trainer),
            f"train_loss {self._loss_sum / self._images:.4f}",
            f"val_acc {float(val_acc):.4f}" if val_acc is not None else "val_acc -",
            f"elapsed {_duration(time.monotonic() - self._fit_started)}",
            f"images/s {self._images / max(self._trained_s, 1e-9):.0f}",
        ]
        print("  ".join(parts), file=self.stream or sys.stdout, flush=True)
