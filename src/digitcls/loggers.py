"""The `logger=` config group: the CSV logger always, plus TensorBoard, MLflow and W&B on request.

``metrics.csv`` is digitcls's own record (the run summary, ``summarize`` and the notebook read it), so the
CSV logger is always first; ``logger=tensorboard|mlflow|wandb`` (or a list) adds trackers. A single run is
named after its output folder; in a sweep each job is one run named after its overrides
(``hydra.job.override_dirname``), grouped by sweep: one MLflow experiment, one TensorBoard folder, one W&B
group.
Every tracker stays local and offline unless its config points elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from digitcls.cli import in_multirun
from digitcls.errors import ConfigError
from digitcls.runs import writable_folder

SINGLE_RUN_EXPERIMENT = "digitcls"
SQLITE_PREFIX = "sqlite:///"
MAX_FOLDER_NAME = 200  # below the usual 255-byte limit, with room for a hash


@dataclass(frozen=True)
class RunIdentity:
    """How trackers name and group this run."""

    output_dir: Path
    name: str  # in a sweep the job's overrides; else the output folder
    sweep_dir: Path | None  # the sweep's folder in a multirun; None for a single run


def run_identity(output_dir: Path) -> RunIdentity:
    if in_multirun():
        hydra = HydraConfig.get()
        return RunIdentity(
            output_dir, hydra.job.override_dirname or str(hydra.job.num), Path(hydra.sweep.dir)
        )
    return RunIdentity(output_dir, str(output_dir), None)


def folder_name(text: str) -> str:
    """``text`` as one folder name: no separators, and a long one cut and made unique by a short hash."""
    name = text.replace(os.sep, "_")
    if len(name.encode()) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return name.encode()[: MAX_FOLDER_NAME - 11].decode(errors="ignore") + "-" + digest


def _tensorboard(spec: dict[str, Any], run: RunIdentity) -> Logger:
    """<run>/tensorboard for a single run; <sweep>/tensorboard/<overrides> per job, so `tensorboard --logdir
    <sweep>/tensorboard` compares the jobs. The HParams view is written once, with the test metrics."""
    save_dir = spec.pop("save_dir", None) or run.sweep_dir or run.output_dir
    version = folder_name(run.name) if run.sweep_dir else ""
    return TensorBoardLogger(
        save_dir=save_dir, name="tensorboard", version=version, default_hp_metric=False, **spec
    )


def _mlflow(spec: dict[str, Any], run: RunIdentity) -> Logger:
    """A local SQLite store unless ``tracking_uri`` says otherwise: MLflow opens it directly, no server."""
    uri = spec.pop("tracking_uri", None) or f"{SQLITE_PREFIX}mlflow.db"
    if uri.startswith(SQLITE_PREFIX):
        writable_folder(Path(uri.removeprefix(SQLITE_PREFIX)).parent, "logger.mlflow.tracking_uri")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a local store: nothing leaves the machine
    experiment = spec.pop("experiment_name", None) or (
        str(run.sweep_dir) if run.sweep_dir else SINGLE_RUN_EXPERIMENT
    )
    tags = {"output_dir": str(run.output_dir), **(spec.pop("tags", None) or {})}
    return MLFlowLogger(experiment_name=experiment, run_name=run.name, tracking_uri=uri, tags=tags, **spec)


def _wandb(spec: dict[str, Any], run: RunIdentity) -> Logger:
    """Offline by default: the run is written to <run>/wandb/offline-run-*; `wandb sync` uploads it later."""
    if spec.get("offline", True):
        os.environ["WANDB_MODE"] = "offline"  # wandb's own switch: no login, no network, in every process
    group = spec.pop("group", None) or (str(run.sweep_dir) if run.sweep_dir else None)
    return WandbLogger(name=run.name, save_dir=str(run.output_dir), group=group, **spec)


# logger name -> (the package it needs, how to build it)
TRACKERS: dict[str, tuple[str, Callable[[dict[str, Any], RunIdentity], Logger]]] = {
    "tensorboard": ("tensorboard", _tensorboard),
    "mlflow": ("mlflow", _mlflow),
    "wandb": ("wandb", _wandb),
}


def build_loggers(cfg: DictConfig, output_dir: Path) -> list[Logger]:
    """The CSV logger (always, first: ``trainer.log_dir`` is the run folder), then each tracker ``logger`` names."""
    chosen: dict[str, Any] = OmegaConf.to_container(cfg.get("logger") or {}, resolve=True)  # type: ignore
    csv = chosen.pop("csv", None) or {}
    loggers: list[Logger] = [CSVLogger(save_dir=output_dir, name="", version="", **csv)]
    run = run_identity(output_dir)
    for name, spec in chosen.items():
        if name not in TRACKERS:
            raise ConfigError(
                f"logger: unknown logger {name!r}; valid: csv, {', '.join(TRACKERS)}; "
                "e.g. logger=[csv,tensorboard]."
            )
        package, build = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"logger={name} needs the {package} package, which is not installed: run `make install` "
                '(or pip install -e ".[loggers]").'
            )
        loggers.append(build(dict(spec or {}), run))
    return loggers


class LogConfig(Callback):
    """Logs the composed config to the trackers (the CSV logger keeps Lightning's hparams.yaml; the config is
    in .hydra/config.yaml). Keys the model already logs as hyperparameters are left to it: MLflow refuses a
    second, different value for a parameter."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rest = {key: value for key, value in self.config.items() if key not in pl_module.hparams}
        for logger in _trackers(trainer):
            logger.log_hyperparams(rest)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """TensorBoard's HParams view pairs hyperparameters with the metrics given in the same call, and only
        the first call counts: made once, here, with the test metrics."""
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test_")}
        hparams = {**self.config, **pl_module.hparams}
        for logger in _trackers(trainer):
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(hparams, metrics=metrics)


def _trackers(trainer: L.Trainer) -> list[Logger]:
    return [logger for logger in trainer.loggers if not isinstance(logger, CSVLogger)]


@contextmanager
def closing_runs(loggers: list[Logger]) -> Iterator[None]:
    """Ends each W&B run when the job ends, failed or not: Lightning would otherwise hand the still-open run
    to the next job of an in-process sweep."""
    try:
        yield
    finally:
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            wandb.finish()  # the active run, if one was started
