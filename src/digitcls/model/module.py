"""The LightningModule: backbone + normalisation + label-smoothing loss + torchmetrics per stage."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import Tensor, nn
from torchmetrics import MetricCollection, classification

from digitcls.checkpoints import read_checkpoint
from digitcls.choices import parse_img_size, parse_scheduler
from digitcls.errors import CheckpointError, ConfigError, DigitclsError
from digitcls.model.backbones import build_backbone, check_input_size, head_name, normalization_for
from digitcls.model.optim import build_optimizer, build_scheduler
from digitcls.schema import TRAIN

# `average=` is always explicit: torchmetrics' defaults differ between wrappers (micro vs macro).
METRICS = {
    "acc": lambda n: classification.MulticlassAccuracy(num_classes=n, average="micro"),
    "f1": lambda n: classification.MulticlassF1Score(num_classes=n, average="macro"),
    "precision": lambda n: classification.MulticlassPrecision(num_classes=n, average="macro"),
    "recall": lambda n: classification.MulticlassRecall(num_classes=n, average="macro"),
}


class NonFiniteLossError(DigitclsError):
    """The training loss became NaN or infinite."""


class DigitClassifier(L.LightningModule):
    """MobileNetV3 classifier. ``forward`` takes uint8 or [0, 1] float images and normalises itself,
    so checkpoints and exported models need no outside preprocessing beyond resizing.

    Training builds it with :func:`~digitcls.schema.arguments_for`: each argument is the config key of the
    same name (``class_names`` comes from the training folder), already checked by :mod:`digitcls.schema`, and
    defaults to that key's declared default, so a model built in Python is the one the CLI trains."""

    def __init__(
        self,
        model_name: str = TRAIN.model_name,
        class_names: Sequence[str] = tuple(str(d) for d in range(TRAIN.class_number)),
        dropout: float = TRAIN.dropout,
        bn_momentum: float = TRAIN.bn_momentum,
        output_stride: int = TRAIN.output_stride,
        img_size: Sequence[int] = parse_img_size(TRAIN.img_size),
        optimizer: str = TRAIN.optimizer,
        learning_rate: float = TRAIN.learning_rate,
        weight_decay: float = TRAIN.weight_decay,
        scheduler: str = TRAIN.scheduler,
        warmup_epoch: int = TRAIN.warmup_epoch,
        label_smooth: float = TRAIN.label_smooth,
        class_weight: Sequence[float] | None = TRAIN.class_weight,
        epochs: int = TRAIN.epochs,
        metrics: Sequence[str] = tuple(TRAIN.metrics),
        channels_last: bool = TRAIN.channels_last,
    ) -> None:
        super().__init__()
        # every argument as given, and nothing else: checkpoints rebuild the model from exactly these
        self.save_hyperparameters()
        self.class_names = [str(name) for name in class_names]
        self.scheduler_spec = parse_scheduler(scheduler)  # fail at construction, not after an epoch
        self.backbone = build_backbone(model_name, len(self.class_names), dropout, bn_momentum, output_stride)
        self.img_size: tuple[int, int] = tuple(img_size)  # (height, width), as the schema parsed it
        check_input_size(self.backbone, model_name, *self.img_size)
        # one blank image: Lightning's model summary counts FLOPs with it (its FLOPs column says 0 without one)
        self.example_input_array = torch.zeros(1, 3, *self.img_size, dtype=torch.uint8)
        # NHWC runs MobileNetV3's depthwise convolutions faster on CPU (docs/benchmarks.md); same results
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone.to(memory_format=self.memory_format)
        mean, std = normalization_for(model_name)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smooth)
        # val_acc drives checkpoints, early stopping and the plateau scheduler: always measured
        names = metrics if "acc" in metrics else ["acc", *metrics]
        stage_metrics = MetricCollection({name: METRICS[name](len(self.class_names)) for name in names})
        self.train_metrics = stage_metrics.clone(prefix="train_")
        self.val_metrics = stage_metrics.clone(prefix="val_")
        self.test_metrics = stage_metrics.clone(prefix="test_")

    def normalise(self, images: Tensor) -> Tensor:
        """uint8 or [0, 1] float images -> the backbone's input (its mean and std, its memory format)."""
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return ((images - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(self.normalise(images))

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str, metrics: MetricCollection) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits.float(), labels)  # float32: exact and stable under mixed precision
        on_step = stage == "train"
        self.log(
            f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(labels),
            sync_dist=not on_step,  # val/test loss averaged over every process, not rank 0's share
        )
        metrics.update(logits, labels)
        # log the metric objects, not values: torchmetrics syncs and resets them per epoch (DDP-correct)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(labels))
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "train", self.train_metrics)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step} "
                f"(batch {batch_idx}). Lower `learning_rate` (now {self.hparams.learning_rate}), add "
                "`warmup_epoch`, or set `gradient_clip_val`; the last.ckpt of the previous epoch is intact."
            )
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        # only trainable parameters: the freeze callback adds the backbone's later
        params = [p for p in self.parameters() if p.requires_grad]
        trainer = self.trainer
        # Lightning's mixed precision (16- and bf16-mixed) refuses to clip the gradients of a fused optimizer,
        # whose step may unscale them itself: clipping then takes torch's per-tensor update
        mixed = isinstance(trainer.precision_plugin, MixedPrecision)
        optimizer = build_optimizer(hp.optimizer, params, lr=hp.learning_rate, weight_decay=hp.weight_decay,
                                    fused=not (mixed and trainer.gradient_clip_val))
        if trainer.datamodule is not None:
            # counted on a loader of its own: trainer.estimated_stepping_batches would build Lightning's training
            # loader now, before a resumed run's checkpoint is restored, and that loader (Lightning 2.6 builds it
            # once) would never get its saved position: a run resumed mid-epoch would restart the epoch
            steps = -(-len(trainer.datamodule.train_dataloader()) // trainer.accumulate_grad_batches)
        else:
            steps = trainer.estimated_stepping_batches // max(1, trainer.max_epochs)
        schedulers = build_scheduler(
            self.scheduler_spec, optimizer, warmup_epoch=hp.warmup_epoch, epochs=trainer.max_epochs,
            steps_per_epoch=int(steps),
        )
        return ([optimizer], schedulers) if schedulers else optimizer


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> DigitClassifier:
    """Load a digitcls checkpoint (tensors and plain values only: :func:`~digitcls.checkpoints.read_checkpoint`),
    turning every way it can be wrong into a clear :class:`CheckpointError`."""
    path = Path(path)
    hint = "Train one with `make train` or pass model_path=<a .ckpt file written by digitcls>."
    checkpoint = read_checkpoint(path, "model_path", hint, map_location=map_location)
    hparams = checkpoint.get("hyper_parameters")
    if not hparams or "class_names" not in hparams or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"model_path: {path} is not a digitcls checkpoint (no class_names in its hyperparameters). "
            "Use a .ckpt written by `python -m digitcls.train`; plain weights go to `pretrained=` instead."
        )
    # before building anything: only this class's arguments, and as many class names as the head has
    # outputs (a small file must not make us allocate a head for millions of classes)
    unknown = sorted(set(hparams) - set(inspect.signature(DigitClassifier).parameters))
    if unknown:
        raise CheckpointError(
            f"model_path: {path} has hyperparameters this digitcls does not know: {unknown}. "
            "Use a .ckpt written by `python -m digitcls.train`."
        )
    model_name = str(hparams.get("model_name", "mobilenetv3"))
    try:
        head_key = f"backbone.{head_name(model_name)}.weight"  # named: state dict order says nothing
    except ConfigError as error:
        raise CheckpointError(f"model_path: {path} was trained with model_name={model_name}. {error}") from None
    head = checkpoint["state_dict"].get(head_key)
    classes = len(hparams["class_names"])
    if not isinstance(head, Tensor) or head.ndim != 2 or head.shape[0] != classes:
        outputs = head.shape[0] if isinstance(head, Tensor) and head.ndim == 2 else "no"
        raise CheckpointError(
            f"model_path: {path} names {classes} classes but its last layer has {outputs} outputs ({head_key}): "
            "it is damaged or not a digitcls checkpoint."
        )
    try:
        if "img_size" in hparams:  # checkpoints from before the schema parsed img_size hold an int
            hparams = {**hparams, "img_size": list(parse_img_size(hparams["img_size"]))}
        model = DigitClassifier(**hparams)
        state = dict(checkpoint["state_dict"])
        if "criterion.class_weight" in state:  # checkpoints from before nn.CrossEntropyLoss held the weight
            state["criterion.weight"] = state.pop("criterion.class_weight")
        model.load_state_dict(state)
    except (DigitclsError, RuntimeError, KeyError, TypeError, ValueError) as error:  # constructors trust their values
        raise CheckpointError(f"model_path: {path} does not match its own hyperparameters: {error}") from None
    return model.eval()
