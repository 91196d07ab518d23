"""Checkpointing with the tutorial's names and its `save_best_only` / `save_one_only` meaning, minus its bugs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from digitcls.atomic import atomic_path, writer


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but into a temporary file beside ``path`` that is then renamed over it.

    Lightning writes to a file in the *system* temp folder and moves it, a copy (which a kill leaves truncated)
    when that folder is on another filesystem. Lightning calls it on global rank 0 only.
    """

    @writer
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` on ``val_acc`` (max) named ``{model_name}_e{epoch}_{val_acc:.5f}.ckpt`` plus ``last.ckpt``.

    ``save_best_only`` says *when* a file is written (true: when val_acc improves; false: every epoch),
    ``save_one_only`` whether older ones are deleted, but never the best one (the tutorial's bug); the four
    combinations are tabled in docs/configuration.md.

    ``last.ckpt`` is rewritten at the end of *every* epoch by this class, not by Lightning's ``save_last``:
    Lightning 2.6 rewrites it only when a top-k file was saved in the same step, so a run killed after epochs
    without improvement would resume from the last improvement, not from where it stopped.
    """

    def __init__(self, dirpath: str | Path, model_name: str, save_best_only: bool, save_one_only: bool) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=f"{model_name.replace('/', '-')}_e{{epoch}}_{{val_acc:.5f}}",  # timm/<name>: one file, no folder
            auto_insert_metric_name=False,
            monitor="val_acc",
            mode="max",
            save_top_k=1 if save_best_only and save_one_only else -1,
        )
        self.improvements_only = save_best_only and not save_one_only
        self.newest_and_best_only = save_one_only and not save_best_only
        self.last_saved_step = 0  # global step of the last last.ckpt (none before the first step)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # every save of the run (this callback's, the Ctrl-C one, Lightning's) through the atomic writer;
        # a checkpoint_io the user configured (sharded, asynchronous, remote) is left alone
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    @property
    def last_path(self) -> str:
        return os.path.join(self.dirpath or ".", self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if self.improvements_only and current is not None and self.best_model_score is not None:
            improved = bool(current > self.best_model_score)
            return trainer.strategy.reduce_boolean_decision(improved)
        return super().check_monitor_top_k(trainer, current)

    # Lightning saves the epoch's file in one of these two hooks (which one depends on the validation setup)
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        before = set(self.best_k_models)
        super().on_train_epoch_end(trainer, pl_module)
        self._prune(trainer, before)
        # at the epoch's very end, after its validation: a resume starts the next epoch (saved from
        # on_validation_end, the loops would resume inside an epoch whose validation already ran)
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not trainer.fast_dev_run
        if fitting and trainer.global_step != self.last_saved_step:
            self.last_model_path = self.last_path  # set before saving: it is part of the saved state
            trainer.save_checkpoint(self.last_model_path, self.save_weights_only)
            self.last_saved_step = trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        before = set(self.best_k_models)
        super().on_validation_end(trainer, pl_module)
        self._prune(trainer, before)

    def _prune(self, trainer: L.Trainer, before: set[str]) -> None:
        if self.newest_and_best_only:  # the previous epoch's file goes, unless it is the best
            keep = {self.best_model_path} | (set(self.best_k_models) - before)
            for path in [path for path in self.best_k_models if path not in keep]:
                self.best_k_models.pop(path)
                trainer.strategy.remove_checkpoint(path)
