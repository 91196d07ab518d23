"""Checkpointing with the tutorial's names and its `save_best_only` / `save_one_only` meaning, minus its bugs."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` on ``val_acc`` (max) named ``{model_name}_e{epoch}_{val_acc:.5f}.ckpt`` plus ``last.ckpt``.

    * ``save_one_only``: a single best file; a new file replaces it only when val_acc improves, so the
      best is never deleted in favour of a worse one (the tutorial's bug).
    * ``save_best_only`` without ``save_one_only``: a new file each time val_acc improves, none deleted.
    * neither: a file every epoch.
    """

    def __init__(self, dirpath: str | Path, model_name: str, save_best_only: bool, save_one_only: bool) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=f"{model_name}_e{{epoch}}_{{val_acc:.5f}}",
            auto_insert_metric_name=False,
            monitor="val_acc",
            mode="max",
            save_top_k=1 if save_one_only else -1,
            save_last=True,
        )
        self.improvements_only = save_best_only and not save_one_only

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if self.improvements_only and current is not None and self.best_model_score is not None:
            improved = bool(current > self.best_model_score)
            return trainer.strategy.reduce_boolean_decision(improved)
        return super().check_monitor_top_k(trainer, current)
