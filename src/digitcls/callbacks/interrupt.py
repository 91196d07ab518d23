"""Ctrl-C during training: finish the batch, save ``last.ckpt`` atomically, exit 130 with how to resume.

Lightning alone catches ``KeyboardInterrupt`` wherever it lands (possibly half-way through an optimizer step)
and exits 1. Here the first Ctrl-C is a request, honoured at the next batch boundary (where Lightning resumes
mid-epoch) by raising :class:`TrainingInterrupted`, a ``SystemExit(130)`` that Lightning cleans up after
(callbacks' ``on_exception``, loggers' ``finalize``) and re-raises. The save is ``OnExceptionCheckpoint``'s,
limited to interruptions (Ctrl-C, a ``KeyboardInterrupt`` outside the main thread, SIGTERM: exit 143); any
other error leaves ``last.ckpt`` as it was, and a second Ctrl-C stops at once without saving. Not a subclass
of ``OnExceptionCheckpoint``: with one among the callbacks, Lightning 2.6 turns ``fit(ckpt_path=None)`` into
``ckpt_path="last"`` and silently resumes, which ``resume=false`` must never do (``tests/unit/test_interrupt.py``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from digitcls.callbacks.checkpoint import BestCheckpoint
from digitcls.errors import EXIT_INTERRUPTED, EXIT_TERMINATED


class TrainingInterrupted(SystemExit):
    """Training stopped on Ctrl-C; ``save``: whether ``last.ckpt`` is to be written on the way out."""

    def __init__(self, save: bool) -> None:
        super().__init__(EXIT_INTERRUPTED)
        self.save = save


class InterruptCheckpoint(Callback):
    """Ctrl-C → stop at the next batch boundary and save ``last.ckpt`` beside ``checkpoint``'s files.

    ``checkpoint``'s folder is where ``resume=true`` looks, and its ``last_model_path`` is set to the file
    written here, so the resumed run keeps rewriting that file.
    """

    def __init__(self, checkpoint: BestCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.ckpt_path = checkpoint.last_path
        self._requested = False
        self._active = False
        self._pid: int | None = None
        self._previous: Any = None

    def _install(self) -> None:
        # signal handlers can only be set from the main thread; elsewhere Lightning's path still applies
        if self._active or threading.current_thread() is not threading.main_thread():
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
            if callable(self._previous):
                self._previous(signum, frame)
                return
            raise KeyboardInterrupt
        if self._requested:
            raise TrainingInterrupted(save=False)  # second Ctrl-C: stop now, keep the last completed save
        self._requested = True
        # os.write to fd 2, not print: a signal handler may interrupt a print to the same stream, and
        # sys.stderr may have no file descriptor (a notebook's, pytest's capture)
        notice = b"\nCtrl-C: stopping after this batch and saving last.ckpt (press Ctrl-C again to stop at once)\n"
        os.write(2, notice)

    # Installed after Lightning's signal connector has recorded the handlers to put back when fit ends (it
    # does so after on_fit_start), and before any DataLoader worker is forked (the sanity check's, then the
    # training loader's), so that workers inherit a handler that ignores Ctrl-C.
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
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
            self._requested = False  # not a second Ctrl-C
            self._report(trainer, saved=os.path.isfile(self.ckpt_path))
            raise TrainingInterrupted(save=False)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        try:
            if isinstance(exception, TrainingInterrupted) and not exception.save:
                if self._requested and trainer.is_global_zero:
                    kept = f"{self.ckpt_path} is kept" if os.path.isfile(self.ckpt_path) else "no last.ckpt yet"
                    print(f"interrupted again: stopped without saving; {kept}", file=sys.stderr, flush=True)
                return
            if isinstance(exception, (TrainingInterrupted, KeyboardInterrupt, SIGTERMException)):
                saving = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
                if saving:  # not in trainer.test (the model holds the best weights then) nor the sanity check
                    self.checkpoint.last_model_path = self.ckpt_path  # part of the saved state
                    trainer.save_checkpoint(self.ckpt_path)
                self._report(trainer, saved=saving)
            if isinstance(exception, SIGTERMException):
                # Lightning stops at the batch boundary after a SIGTERM with SystemExit(None), i.e. status 0; a
                # scheduler must not take a pre-empted run for a finished one: 143 (128 + SIGTERM), as if killed
                exception.code = EXIT_TERMINATED
        finally:
            self._restore()  # after the save: a second Ctrl-C while saving still means "stop now"

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        # every rank must agree, or one would wait in save_checkpoint's barrier while another trains on
        if trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            raise TrainingInterrupted(save=True)

    def _report(self, trainer: L.Trainer, saved: bool) -> None:
        if trainer.is_global_zero:
            message = f"saved {self.ckpt_path}; resume with resume=true" if saved else "nothing saved"
            print(f"interrupted: {message}", file=sys.stderr, flush=True)
