"""Checkpointing with the tutorial's names and its `save_best_only` / `save_one_only` meaning, minus its bugs."""

from __future__ import annotations

from pathlib import Path
from weakref import proxy

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from digitcls.atomic import atomic_path, writer


@writer
def save_checkpoint_atomically(trainer: L.Trainer, path: str | Path, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint`` into a temporary file beside ``path``, then rename it over ``path``.

    Lightning writes to a file in the *system* temp folder and ``shutil.move``s it: a rename only when that
    folder is on the checkpoint's filesystem; otherwise a copy into the final name, which a kill or a full
    disk leaves truncated. A temporary file in the same folder makes the rename always atomic: readers (and
    ``resume=true``) see the old checkpoint or the new one, never half of one. All ranks must call this
    (saving has a barrier); only global rank 0 writes, so only it renames.
    """
    with atomic_path(path, commit=trainer.is_global_zero) as tmp:
        trainer.save_checkpoint(tmp, weights_only)


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` on ``val_acc`` (max) named ``{model_name}_e{epoch}_{val_acc:.5f}.ckpt`` plus ``last.ckpt``.

    ``save_best_only`` says *when* a file is written (true: when val_acc improves; false: every epoch),
    ``save_one_only`` whether older ones are deleted (the tutorial's meaning) — but never the best one (the
    tutorial's bug deleted it in favour of a worse one):

    =============== =============== ===========================================================
    save_best_only  save_one_only   files kept (besides ``last.ckpt``)
    =============== =============== ===========================================================
    true            true            one: the best; replaced only by a strictly better epoch
    true            false           one per improvement of val_acc, none deleted
    false           true            the newest epoch's and the best (one file when they coincide)
    false           false           one per epoch, none deleted
    =============== =============== ===========================================================

    ``last.ckpt`` is rewritten at the end of *every* epoch. (Lightning 2.6 rewrites it only when a top-k
    file was saved in the same step, i.e. only when val_acc improved: a run killed after a few epochs without
    improvement would resume from the last improvement, not from where it stopped.) Every file is written
    atomically (:func:`save_checkpoint_atomically`).
    """

    def __init__(self, dirpath: str | Path, model_name: str, save_best_only: bool, save_one_only: bool) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=f"{model_name.replace('/', '-')}_e{{epoch}}_{{val_acc:.5f}}",  # timm/<name>: one file, no folder
            auto_insert_metric_name=False,
            monitor="val_acc",
            mode="max",
            save_top_k=1 if save_best_only and save_one_only else -1,
            save_last=True,
        )
        self.improvements_only = save_best_only and not save_one_only
        self.newest_and_best_only = save_one_only and not save_best_only

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if self.improvements_only and current is not None and self.best_model_score is not None:
            improved = bool(current > self.best_model_score)
            return trainer.strategy.reduce_boolean_decision(improved)
        return super().check_monitor_top_k(trainer, current)

    def _update_best_and_save(
        self, current: torch.Tensor, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]
    ) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        if self.newest_and_best_only:  # the previous epoch's file goes, unless it is the best
            keep = {self.best_model_path, self._last_checkpoint_saved}
            for path in [path for path in self.best_k_models if path not in keep]:
                self.best_k_models.pop(path)
                if self._should_remove_checkpoint(trainer, path, self._last_checkpoint_saved):
                    self._remove_checkpoint(trainer, path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_unless_saved(trainer)

    def _save_last_unless_saved(self, trainer: L.Trainer) -> None:
        # skipped when this step was saved already (then last.ckpt was too), in the sanity check, etc.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        # ModelCheckpoint._save_checkpoint (Lightning 2.6) with the write made atomic; loggers are told
        # only once the file is in place, since some of them upload it
        save_checkpoint_atomically(trainer, filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
