"""The `logger=` config group: the CSV logger always (``metrics.csv`` is digitcls's own record), plus TensorBoard,
MLflow and W&B on request, each a ``_target_`` config in ``conf/logger/`` (docs/configuration.md, "Loggers"). The
``digitcls_*`` resolvers below name runs after the output folder, or in a sweep after the job's overrides.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from digitcls.cli import in_multirun
from digitcls.errors import ConfigError
from digitcls.runs import writable_folder

SQLITE_PREFIX = "sqlite:///"
MAX_FOLDER_NAME = 200  # below the usual 255-byte limit, with room for a hash
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # logger= name -> package it needs


def folder_name(text: str) -> str:
    """``text`` as one folder name: no separators, and a long one cut and made unique by a short hash."""
    name = text.replace(os.sep, "_")
    if len(name.encode()) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return name.encode()[: MAX_FOLDER_NAME - 11].decode(errors="ignore") + "-" + digest


def _job_name() -> str:
    job = HydraConfig.get().job
    return job.override_dirname or str(job.num)


# in a multirun: the sweep's folder / this job's name (its overrides); in a single run: the value given
OmegaConf.register_new_resolver(
    "digitcls_sweep_or", lambda single: HydraConfig.get().sweep.dir if in_multirun() else single, replace=True)
OmegaConf.register_new_resolver(
    "digitcls_job_or", lambda single: _job_name() if in_multirun() else single, replace=True)
OmegaConf.register_new_resolver(
    "digitcls_job_folder", lambda: folder_name(_job_name()) if in_multirun() else "", replace=True)


def build_loggers(cfg: DictConfig, output_dir: Path) -> list[Logger]:
    """The CSV logger (always, first: ``trainer.log_dir`` is the run folder), then each tracker ``logger`` names."""
    # the logger configs under a root whose output_dir is this run's folder: their `${output_dir}` resolves to it
    root = OmegaConf.create({"output_dir": str(output_dir), "logger": OmegaConf.to_container(cfg.get("logger") or {})})
    chosen = dict(root.logger)
    loggers: list[Logger] = [CSVLogger(save_dir=output_dir, name="", version="", **(chosen.pop("csv", None) or {}))]
    for name, spec in chosen.items():
        if name not in TRACKERS or "_target_" not in (spec or {}):
            raise ConfigError(
                f"logger: unknown logger {name!r}; valid: csv, {', '.join(TRACKERS)}; e.g. logger=[csv,tensorboard]."
            )
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(
                f"logger={name} needs the {TRACKERS[name]} package, which is not installed: run `make install` "
                '(or pip install -e ".[loggers]").'
            )
        uri = str(spec.get("tracking_uri") or "")
        if uri.startswith(SQLITE_PREFIX):  # a local MLflow store: nothing leaves the machine
            writable_folder(Path(uri.removeprefix(SQLITE_PREFIX)).parent, "logger.mlflow.tracking_uri")
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        loggers.append(instantiate(spec))
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
