"""Precise BatchNorm: recompute the BatchNorm statistics of the weights about to be validated.

BatchNorm normalises a training batch with that batch's own mean and variance, but evaluates with running
averages that move by ``momentum`` each step. After few steps (a small folder, a short run) those averages
still describe the weights of many steps ago, and evaluation collapses: the ``mbv3`` recipe on 2,000 MNIST
images for 3 epochs trained to 65 % accuracy but scored 18 % on val and test. Recomputing the statistics
on training batches just before validation ("precise BN", Wu & Johnson, *Rethinking "Batch" in BatchNorm*,
2021) makes evaluation reflect the current weights, however short the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn

from digitcls.private_apis import BatchNorm


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, layers: list[BatchNorm], inputs: Iterable[Tensor]) -> int:
    """Reset ``layers``' running statistics to the cumulative average of their statistics on ``inputs``.

    What :func:`torch.optim.swa_utils.update_bn` does (momentum ``None``: every batch weighs the same),
    except that only ``layers`` change and every other module keeps its mode (dropout stays off, a
    BatchNorm frozen in eval mode keeps its statistics). Returns the number of batches used.
    """
    modes = {module: module.training for module in model.modules()}
    momenta = {layer: layer.momentum for layer in layers}
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    used = 0
    try:
        for images in inputs:
            model(images)
            used += 1
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        for module, training in modes.items():
            module.training = training
    return used


class PreciseBatchNorm(Callback):
    """Before each validation in ``fit``, recompute BatchNorm statistics on ``batches`` (``precise_bn_batches``)
    training batches.

    * **Which batches**: the first ``batches`` of the datamodule's training loader (seeded: the same images
      every time), *not* augmented: on MNIST that scored as well or better (docs/experiments.md, "Short runs").
    * **Which layers**: those in training mode during the last training step; a BatchNorm kept in eval mode
      (a body frozen by ``freeze_nonlinear_epoch``) keeps its statistics.
    * **When**: at the first validation batch, after every ``on_validation_epoch_start`` hook, so after
      ``EMAWeightAveraging`` swapped in the averaged weights, whatever the callback order: the statistics (and
      the checkpoint saved after validation) are those of the weights validated. Not in the sanity check, nor
      in ``trainer.validate``/``test``. The global random state is left as it was.
    """

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches
        self._layers: list[BatchNorm] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # by validation time Lightning has put every module in eval mode: remember which ones train
        self._layers = [m for m in pl_module.modules() if isinstance(m, BatchNorm) and m.training]

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        first_batch = batch_idx == 0 and dataloader_idx == 0
        if not first_batch or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not self._layers:
            return
        # A fresh loader, not `trainer.train_dataloader` (with persistent workers a second pass over it would
        # restart the iterator training uses); the same batches on every rank (no distributed sampler); not
        # augmented (the datamodule's transfer hooks augment only while the trainer trains); a batch is None when
        # all its images were unreadable (on_bad_image=skip). The loader draws its workers' base seed from the
        # global generator: give it a copy.
        with torch.random.fork_rng(devices=[]), trainer.precision_plugin.forward_context():
            batches = islice(trainer.datamodule.train_dataloader(), self.batches)
            images = (trainer.strategy.batch_to_device(batch)[0] for batch in batches if batch is not None)
            recompute_batchnorm_statistics(pl_module, self._layers, images)
