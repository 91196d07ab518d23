"""A Hydra callback (``hydra.callbacks`` in ``conf/hydra/default.yaml``) that ends every multirun with a ranked
summary of its jobs: ``job_status.json`` in each job folder, then ``summary.csv``, ``summary.md`` and
``val_acc_curves.png`` in the sweep folder (:mod:`digitcls.reports.sweep`, docs/scaling.md). Nothing happens in
a single run (RUN mode), including Lightning's DDP child processes, which re-run the job in RUN mode.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from digitcls import atomic
from digitcls.cli import in_multirun
from digitcls.errors import DigitclsError
from digitcls.private_apis import failed_job_error
from digitcls.reports.sweep import JOB_STATUS_FILE, SUMMARY_MD, write_sweep_summary

log = logging.getLogger(__name__)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class SweepSummary(Callback):
    """Per-job status files and the end-of-sweep summary. ``plot``: also draw val_acc_curves.png."""

    def __init__(self, plot: bool = True) -> None:
        self.plot = plot
        self._started: dict[str, float] = {}

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if in_multirun(config):
            self._started[config.hydra.runtime.output_dir] = time.perf_counter()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not in_multirun(config):
            return
        output_dir = config.hydra.runtime.output_dir
        wall_time = time.perf_counter() - self._started.pop(output_dir, time.perf_counter())
        failed = job_return.status == JobStatus.FAILED
        error: BaseException | None = failed_job_error(job_return) if failed else None
        # not in the extra processes of a job that SLURM or torchrun started once per device
        if int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) == 0:
            status = {
                "job": config.hydra.job.num,
                "status": "failed" if error else "ok",
                "error": describe(error) if error else None,
                "traceback": "".join(traceback.format_exception(error)) if error else None,
                "wall_time_s": round(wall_time, 2),
            }
            atomic.write_json(Path(output_dir) / JOB_STATUS_FILE, status)
        if error is not None:
            # user errors carry a full explanation; anything else deserves its traceback in the job log
            log.error("job #%s failed: %s", config.hydra.job.num, describe(error),
                      exc_info=None if isinstance(error, DigitclsError) else error)  # fmt: skip
            # Hydra's sweepers re-raise a failed job once the batch ends, which skips on_multirun_end
            # (no summary) and, with the Optuna sweeper, the remaining trials. The failure is recorded
            # above; the sweeper sees a job that returned None (Optuna: a failed trial) and goes on.
            job_return.status = JobStatus.COMPLETED
            job_return.return_value = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows, _ = write_sweep_summary(sweep_dir, plot=self.plot)
        failed = rows.job[rows.status == "failed"].tolist()
        print((sweep_dir / SUMMARY_MD).read_text(), flush=True)
        if failed:
            log.warning("%d of %d jobs failed (%s): see the error column of %s", len(failed), len(rows),
                        ", ".join(f"#{job}" for job in failed), sweep_dir / SUMMARY_MD)  # fmt: skip
