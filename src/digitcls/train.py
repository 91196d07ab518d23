"""`python -m digitcls.train +experiment=mbv3`: prepare data if needed, train, test the best checkpoint.

Thin by design: compose the config, build the pieces, run them. ``train(cfg)`` returns the metrics;
``main`` returns best val accuracy so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging, LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from digitcls.callbacks.checkpoint import BestCheckpoint
from digitcls.callbacks.freeze import FreezeBackbone
from digitcls.callbacks.interrupt import InterruptCheckpoint
from digitcls.callbacks.precise_bn import PreciseBatchNorm
from digitcls.checkpoints import read_checkpoint
from digitcls.choices import parse_scheduler
from digitcls.cli import friendly_errors
from digitcls.data.datamodule import DigitDataModule
from digitcls.data.prepare import ensure_prepared
from digitcls.devices import plan_for_this_machine
from digitcls.errors import ConfigError
from digitcls.inputs import check_checkpoint_classes, check_train_inputs
from digitcls.loggers import LogConfig, build_loggers, closing_runs
from digitcls.model.backbones import load_pretrained
from digitcls.model.module import DigitClassifier
from digitcls.noise import silence_third_party_noise
from digitcls.progress import EpochLines, progress_bar
from digitcls.runs import resume_checkpoint, writable_folder, write_summary
from digitcls.schema import arguments_for, validated

log = logging.getLogger(__name__)

# Schedules that anneal the learning rate to its end at the last planned epoch. Their accuracy is made in that
# annealing: mid-schedule, at a high learning rate, val accuracy stalls and says nothing about what the end
# brings (mbv3, seed 2: val peaked at epoch 3 of 15, patience 5 stopped it at epoch 9 with 99.10 % test; run
# to its end, 99.63 %). So early stopping is off for them: the run ends where its schedule ends, and its
# length is `epochs`. Counting patience only in the "final phase" would not help: one-cycle and cosine
# anneal until the very last step. Plateau-driven and open-ended schedules keep `early_stop_patient`.
RUN_TO_THE_END = frozenset({"onecycle", "cosine"})


silence_third_party_noise()  # at import: ddp_spawn's processes import this module too

def build_datamodule(cfg: DictConfig) -> DigitDataModule:
    """``cfg``: a validated training config (``digitcls.schema.validated``: img_size as [height, width])."""
    return DigitDataModule(**arguments_for(DigitDataModule, cfg))


def build_model(cfg: DictConfig, class_names: list[str]) -> DigitClassifier:
    if cfg.class_number != len(class_names):
        raise ConfigError(
            f"class_number={cfg.class_number} but train_path ({cfg.train_path}) has {len(class_names)} class "
            f"folders: {class_names}. Set class_number={len(class_names)} or fix the folders."
        )
    model = DigitClassifier(**arguments_for(DigitClassifier, cfg, class_names=class_names))
    if cfg.pretrained:
        load_pretrained(model.backbone, cfg.pretrained)
    return model


def build_callbacks(cfg: DictConfig, checkpoint_dir: Path) -> tuple[BestCheckpoint, list[Callback]]:
    checkpoint = BestCheckpoint(checkpoint_dir, cfg.model_name, cfg.save_best_only, cfg.save_one_only)
    # Ctrl-C: save last.ckpt at the next batch boundary, then exit 130 with how to resume
    callbacks: list[Callback] = [
        checkpoint,
        InterruptCheckpoint(checkpoint),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    if cfg.early_stop_patient > 0 and parse_scheduler(cfg.scheduler).kind in RUN_TO_THE_END:
        log.info(
            "early_stop_patient=%d is not used with scheduler=%s: the schedule anneals to epoch %d, where the run "
            "ends", cfg.early_stop_patient, cfg.scheduler, cfg.epochs,
        )  # fmt: skip
    elif cfg.early_stop_patient > 0:
        callbacks.append(EarlyStopping(monitor="val_acc", mode="max", patience=cfg.early_stop_patient))
    if cfg.freeze_nonlinear_epoch > 0:
        callbacks.append(FreezeBackbone(unfreeze_at_epoch=cfg.freeze_nonlinear_epoch))
    if cfg.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    if cfg.precise_bn_batches > 0:
        callbacks.append(PreciseBatchNorm(cfg.precise_bn_batches))
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(progress_bar())  # rich bars in a terminal, plain lines in logs
    else:
        callbacks.append(EpochLines())  # one line per epoch, so a quiet run still says how it goes
    return checkpoint, callbacks


def build_trainer(cfg: DictConfig, output_dir: Path, callbacks: list[Callback]) -> L.Trainer:
    trainer_kwargs: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)  # type: ignore[assignment]
    trainer_kwargs, note = plan_for_this_machine(trainer_kwargs)
    if note:
        log.warning(note)
    # the DataModule shards every split itself: val/test unpadded, training in a (seed, epoch) order
    trainer_kwargs["use_distributed_sampler"] = False
    try:
        return L.Trainer(
            **trainer_kwargs, callbacks=callbacks, logger=build_loggers(cfg, output_dir), default_root_dir=output_dir
        )
    except MisconfigurationException as error:  # Lightning checks the trainer keys: e.g. a GPU where none is
        raise ConfigError(f"trainer: {error}") from None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, then test the best checkpoint; return the run summary (also written to summary.json)."""
    cfg = validated(cfg, "train")
    started = time.perf_counter()
    output_dir = writable_folder(cfg.output_dir, "output_dir")
    resume_from = resume_checkpoint(cfg.ckpt_path, cfg.resume, output_dir)
    checkpoint_classes = check_train_inputs(cfg, resume_from)
    L.seed_everything(cfg.random_seed, workers=True)  # always seeded: random_seed=0 is a valid seed

    ensure_prepared(cfg.train_path, cfg.val_path, cfg.test_path, cfg.raw_dir)
    check_checkpoint_classes(checkpoint_classes, cfg.train_path)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.class_names)

    # resuming keeps checkpoints beside the one resumed from, so the best-so-far state carries over
    checkpoint_dir = resume_from.parent if resume_from else output_dir / "checkpoints"
    checkpoint, callbacks = build_callbacks(cfg, checkpoint_dir)
    trainer = build_trainer(cfg, output_dir, [*callbacks, LogConfig(cfg)])
    with closing_runs(trainer.loggers):
        fit_started = time.perf_counter()
        # weights_only=True: checkpoints hold tensors and plain values only (digitcls.checkpoints)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        fit_seconds = time.perf_counter() - fit_started
        best_path = cfg.model_path or checkpoint.best_model_path or checkpoint.last_model_path
        test_metrics: dict[str, float] = {}
        if cfg.test_path and best_path:
            results = trainer.test(model, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)
            test_metrics = {k: float(v) for k, v in results[0].items()} if results else {}

    best_score, epochs_run = checkpoint.best_model_score, trainer.current_epoch
    if best_score is None and checkpoint.best_model_path:
        # after ddp_spawn the main process gets back only best_model_path (Lightning: "TODO: pass also best
        # score") and an unchanged current_epoch: read both from the files
        best = read_checkpoint(checkpoint.best_model_path, "best checkpoint", mmap=True)
        last = read_checkpoint(Path(checkpoint.dirpath) / "last.ckpt", "last checkpoint", mmap=True)
        best_score, epochs_run = best["callbacks"][checkpoint.state_key]["best_model_score"], int(last["epoch"]) + 1
    # epoch of the best checkpoint, read from its `_e{epoch}_{val_acc}.ckpt` file name
    best_epoch = re.search(r"_e(\d+)_[^_/]*$", checkpoint.best_model_path or "")
    # training images per second of fit, validation included (a resumed fit ran only part of its epochs)
    fit_rate = None if resume_from else round(len(datamodule.train_dataset) * epochs_run / fit_seconds, 1)
    summary = {
        "best_val_acc": None if best_score is None else float(best_score),
        "best_checkpoint": str(Path(best_path).resolve()) if best_path else None,
        "best_epoch": int(best_epoch.group(1)) if best_epoch else None,
        "epochs_run": epochs_run,
        "test_acc": test_metrics.get("test_acc"),
        "test_metrics": test_metrics,
        "output_dir": str(output_dir.resolve()),
        "class_names": datamodule.class_names,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "interrupted": trainer.interrupted,
        "precision": str(trainer.precision),
        "fit_images_per_s": fit_rate,
    }
    if trainer.is_global_zero:
        write_summary(output_dir, summary)
        pct = {key: "n/a" if summary[key] is None else f"{summary[key]:.4%}" for key in ("best_val_acc", "test_acc")}
        print(
            "\n== digitcls training summary ==\n"
            f"best val acc : {pct['best_val_acc']} (epoch {summary['best_epoch']})\n"
            f"test acc     : {pct['test_acc']}\n"
            f"checkpoint   : {summary['best_checkpoint']}\n"
            f"output folder: {summary['output_dir']}\n"
            f"wall time    : {summary['wall_time_s']:.1f} s",
            flush=True,
        )
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return friendly_errors(train)(cfg)["best_val_acc"]


if __name__ == "__main__":
    main()
