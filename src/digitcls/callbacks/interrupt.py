"""Ctrl-C during training: finish the batch, save ``last.ckpt`` atomically, exit 130 with how to resume.

Lightning alone catches ``KeyboardInterrupt`` wherever it lands (possibly half-way through an optimizer
step), calls the callbacks' ``on_exception`` and then ``sys.exit(1)``. This callback instead turns the first
Ctrl-C into a request, honoured at the next batch boundary, where the state is consistent (the same point
``ModelCheckpoint(every_n_train_steps=...)`` saves at, which Lightning resumes mid-epoch):

1. save ``<checkpoint dir>/last.ckpt`` (temporary file beside it, then rename);
2. print ``interrupted: saved <path>; resume with resume=true`` on stderr;
3. raise :class:`TrainingInterrupted`, a ``SystemExit(130)``: Lightning still runs its cleanup for it
   (callbacks' ``on_exception``, loggers' ``finalize`` so metrics.csv is flushed, teardown) and re-raises;
   nothing above catches ``SystemExit``, so the process ends with status 130 (128 + SIGINT) and no traceback.

A second Ctrl-C stops at once without saving (the last completed save stays). A ``KeyboardInterrupt``
that bypasses the handler (training outside the main thread) still gets ``last.ckpt`` saved on the way
out, as does Lightning's ``SIGTERMException``; Lightning then chooses the exit status.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from digitcls.callbacks.checkpoint import save_checkpoint_atomically

log = logging.getLogger("digitcls")

EXIT_INTERRUPTED = 130  # what shells report for a program stopped by Ctrl-C (128 + SIGINT)
LAST = "last.ckpt"


class TrainingInterrupted(SystemExit):
    """Training stopped on Ctrl-C; ``path`` is the checkpoint to resume from (None: nothing was saved)."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(EXIT_INTERRUPTED)
        self.path = path


class InterruptCheckpoint(Callback):
    """Ctrl-C → save ``last.ckpt`` next to ``checkpoint``'s files at the next batch boundary and stop.

    ``checkpoint`` is the run's :class:`ModelCheckpoint`: its folder is where ``resume=true`` looks, and its
    ``last_model_path`` must name the file we write, or on resume Lightning's version counter would write
    ``last-v1.ckpt`` beside the file ``resume=true`` keeps finding.
    """

    def __init__(self, checkpoint: ModelCheckpoint) -> None:
        self.checkpoint = checkpoint
        self._requested = False
        self._active = False
        self._pid: int | None = None
        self._previous: Any = None

    @property
    def last_path(self) -> Path:
        return Path(self.checkpoint.dirpath or ".") / LAST

    # ------------------------------------------------------------------ the SIGINT handler

    def _install(self) -> None:
        # signal handlers can only be set from the main thread; elsewhere Lightning's path still applies
        if threading.current_thread() is not threading.main_thread():
            return
        self._requested = False
        self._pid = os.getpid()
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        self._active = True

    def _restore(self) -> None:
        if not self._active:
            return
        self._active = False
        if threading.current_thread() is threading.main_thread() and os.getpid() == self._pid:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid:
            # a forked DataLoader worker inherited this handler: it keeps working, the main process decides
            return
        if not self._active:  # fit ended by an exception before we could restore: behave as before
            previous = self._previous
            if callable(previous):
                previous(signum, frame)
                return
            raise KeyboardInterrupt
        if self._requested:
            raise TrainingInterrupted(None)  # second Ctrl-C: stop now, keep the last completed save
        self._requested = True
        # os.write, not print: a signal handler may interrupt a print to the same stream
        os.write(
            sys.stderr.fileno(),
            b"\nCtrl-C: stopping after this batch and saving last.ckpt (press Ctrl-C again to stop at once)\n",
        )

    # ------------------------------------------------------------------ Lightning hooks

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # before any DataLoader worker is forked, so workers inherit a handler that ignores Ctrl-C
        self._install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a Ctrl-C during validation is honoured here, after the checkpoint callbacks saved this epoch
        self._stop_if_requested(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        requested = self._requested
        self._restore()
        if requested:  # Ctrl-C after the last batch: training is complete and last.ckpt is its final state
            raise self._stopped(trainer, self.last_path if self.last_path.is_file() else None)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, TrainingInterrupted):
            if exception.path is None and trainer.is_global_zero:
                kept = f"{self.last_path} is kept" if self.last_path.is_file() else "no last.ckpt was written yet"
                print(f"interrupted again: stopped without saving; {kept}", file=sys.stderr, flush=True)
            return
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and self._fitting(trainer):
            path = self.save(trainer)
            if trainer.is_global_zero:
                print(f"interrupted: saved {path}; resume with resume=true", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ saving

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        """Saving makes sense only while fitting: not in trainer.test (the model holds the best weights
        then, not the training state) and not in the sanity check (nothing trained yet)."""
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        # every rank must agree, or one would wait in save_checkpoint's barrier while another trains on
        if not trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            return
        # the handler stays until on_exception: a second Ctrl-C while saving still means "stop now"
        raise self._stopped(trainer, self.save(trainer) if self._fitting(trainer) else None)

    def _stopped(self, trainer: L.Trainer, path: Path | None) -> TrainingInterrupted:
        if trainer.is_global_zero:
            if path is None:
                print("interrupted before any training step: nothing saved", file=sys.stderr, flush=True)
            else:
                print(f"interrupted: saved {path}; resume with resume=true", file=sys.stderr, flush=True)
        return TrainingInterrupted(path)

    def save(self, trainer: L.Trainer) -> Path:
        """Write ``last.ckpt`` atomically (all ranks call it: saving has a barrier) and return its path."""
        path = self.last_path
        # recorded before saving, as ModelCheckpoint does, because it is part of the saved state
        self.checkpoint.last_model_path = str(path)
        save_checkpoint_atomically(trainer, path)
        log.info(
            "Ctrl-C: saved the training state at epoch %d, step %d to %s",
            trainer.current_epoch,
            trainer.global_step,
            path,
        )
        return path
