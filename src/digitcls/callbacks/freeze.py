"""Train only the head first: freeze the convolutional body until ``unfreeze_at_epoch``."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.optim import Optimizer

from digitcls.errors import ConfigError
from digitcls.model.backbones import body_of as backbone_body
from digitcls.model.optim import adopt_new_param_groups
from digitcls.private_apis import BatchNorm

log = logging.getLogger(__name__)


def body_of(pl_module: pl.LightningModule) -> nn.Module:
    """The module to freeze: all of ``pl_module.backbone`` but its head (:func:`~digitcls.model.backbones.body_of`)."""
    backbone = getattr(pl_module, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ConfigError(
            f"freeze_nonlinear_epoch: {type(pl_module).__name__} has no `backbone` module to freeze; "
            "set freeze_nonlinear_epoch=0."
        )
    return backbone_body(backbone)


def _set_batchnorm_mode(pl_module: pl.LightningModule, training: bool) -> None:
    for module in body_of(pl_module).modules():
        if isinstance(module, BatchNorm):
            module.train(training)


class FreezeBackbone(BaseFinetuning):
    """Freeze the body (weights *and* BatchNorm statistics) for epochs ``0 .. unfreeze_at_epoch - 1``
    (docs/configuration.md); ``unfreeze_at_epoch=0`` does nothing.

    While frozen, BatchNorm layers run in eval mode: Lightning's ``train_bn=False`` alone stops the statistics
    from updating but still normalises training batches with batch statistics, so the head would learn on
    features that validation never sees. The body joins at the head's *current* learning rate, not Lightning's
    default of a tenth of it: its weights (often an earlier run, or other data) still need real training on
    digits (:func:`~digitcls.model.optim.adopt_new_param_groups`). Multi-process training is refused: DDP
    registers only the parameters that require grad when it wraps the model, so a body unfrozen later would
    never have its gradients synchronised (Lightning issue #20340) and the replicas would drift apart silently.
    """

    def __init__(self, unfreeze_at_epoch: int) -> None:
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.frozen = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # `trainer.test` after `fit` must not freeze the trained body again
        if stage != "fit" or self.unfreeze_at_epoch == 0:
            return
        if trainer.world_size > 1:
            raise ConfigError(
                f"freeze_nonlinear_epoch: freezing the backbone does not work with {trainer.world_size} "
                "processes (DDP never synchronises parameters unfrozen after it wraps the model). "
                "Set freeze_nonlinear_epoch=0, or train on one device (trainer.devices=1)."
            )
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        # called from `setup`, before `configure_optimizers`: the optimizer sees only the head
        self.freeze(body_of(pl_module), train_bn=False)
        self.frozen = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here and not at freeze time: Lightning warns about modules left in eval mode before this hook
        if self.frozen:
            _set_batchnorm_mode(pl_module, training=False)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        # `>=`, not `==`: a run resumed after the unfreeze epoch must unfreeze too
        if not self.frozen or epoch < self.unfreeze_at_epoch:
            return
        body = body_of(pl_module)
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if all(id(p) in in_optimizer for p in body.parameters()):
            self.make_trainable(body)  # resumed: BaseFinetuning already restored the param group
        else:
            self.unfreeze_and_add_param_group(body, optimizer, lr=optimizer.param_groups[0]["lr"], train_bn=True)
            for config in pl_module.trainer.lr_scheduler_configs:
                if config.scheduler.optimizer is optimizer:
                    adopt_new_param_groups(config.scheduler)
        _set_batchnorm_mode(pl_module, training=True)
        self.frozen = False
        log.info("freeze: backbone body unfrozen at epoch %d", epoch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run that ends before the unfreeze epoch leaves the module as it found it
        if self.frozen:
            self.make_trainable(body_of(pl_module))
            _set_batchnorm_mode(pl_module, training=True)
            self.frozen = False
