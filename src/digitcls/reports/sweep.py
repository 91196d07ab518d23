"""The ranked summary of a Hydra sweep folder: one row per job, best first, failed jobs last.

Built only from what each job leaves in its folder, so it can be rebuilt at any time
(``python -m digitcls.summarize <sweep dir>``) and works whatever launcher ran the jobs:

* ``.hydra/overrides.yaml`` and ``.hydra/hydra.yaml``: written by Hydra before the job starts;
* ``summary.json``: written by ``digitcls.train`` when training and testing finished;
* ``job_status.json``: written by :class:`digitcls.callbacks.hydra_summary.SweepSummary` when the
  job ended, ok or failed (a failed job writes no ``summary.json``);
* ``metrics.csv``: Lightning's CSVLogger, one ``val_acc`` per epoch.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from digitcls import atomic
from digitcls.atomic import atomic_path, writer
from digitcls.runs import SUMMARY_FILE

JOB_STATUS_FILE = "job_status.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
CURVES_PNG = "val_acc_curves.png"
METRICS_CSV = "metrics.csv"
UNFINISHED = "unfinished: no summary.json nor job_status.json (killed, timed out, or still running)"
NO_SUMMARY = "ended without writing summary.json"
MD_ERROR_CHARS = 160  # summary.md stays readable; summary.csv and job_status.json keep the whole message


@dataclass
class JobRow:
    """One job of the sweep, as it appears in summary.csv."""

    rank: int | None
    job: int | None
    status: str  # ok | failed
    best_val_acc: float | None
    test_acc: float | None
    best_epoch: int | None
    epochs_run: int | None
    wall_time_s: float | None
    overrides: list[str]
    error: str | None
    output_dir: str
    best_checkpoint: str | None


COLUMNS = [f.name for f in fields(JobRow)]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job folder under the sweep: the ones where Hydra saved the job's overrides."""
    return sorted(p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _job_number(job_dir: Path) -> int | None:
    """Hydra's job number, from the job's saved Hydra config (the folder name need not be it)."""
    try:
        hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())
        return int(hydra_cfg["hydra"]["job"]["num"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return int(job_dir.name) if job_dir.name.isdigit() else None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def read_job(job_dir: Path) -> JobRow:
    """One row from a job folder; a job that left no summary.json is ``failed``."""
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    summary = _read_json(job_dir / SUMMARY_FILE)
    status = _read_json(job_dir / JOB_STATUS_FILE) or {}
    failed = status.get("status") == "failed" or summary is None
    error = status.get("error")
    if summary is None and error is None:
        error = NO_SUMMARY if status else UNFINISHED
    summary = summary or {}
    wall_time = status.get("wall_time_s", summary.get("wall_time_s"))
    return JobRow(
        rank=None,
        job=_job_number(job_dir),
        status="failed" if failed else "ok",
        best_val_acc=_finite(summary.get("best_val_acc")),
        test_acc=_finite(summary.get("test_acc")),
        best_epoch=summary.get("best_epoch"),
        epochs_run=summary.get("epochs_run"),
        wall_time_s=_finite(wall_time),
        overrides=[str(o) for o in overrides],
        error=error,
        output_dir=str(job_dir),
        best_checkpoint=summary.get("best_checkpoint"),
    )


def rank_jobs(rows: Sequence[JobRow]) -> list[JobRow]:
    """Best val acc first (test acc, then job number, break ties); jobs without a score, then failed ones, last."""

    def key(row: JobRow) -> tuple:
        return (
            row.status != "ok",
            row.best_val_acc is None,
            -(row.best_val_acc or 0.0),
            -(row.test_acc or 0.0),
            row.job if row.job is not None else math.inf,
        )

    ranked = sorted(rows, key=key)
    for position, row in enumerate(ranked, start=1):
        row.rank = position
    return ranked


def collect(sweep_dir: Path) -> list[JobRow]:
    """The ranked rows of every job folder under ``sweep_dir``."""
    return rank_jobs([read_job(d) for d in job_dirs(sweep_dir)])


def common_overrides(rows: Sequence[JobRow]) -> list[str]:
    """Overrides every job shares (e.g. ``+experiment=mbv3 epochs=1``): the table shows only the rest."""
    if len(rows) < 2:
        return []
    shared = set(rows[0].overrides).intersection(*(row.overrides for row in rows[1:]))
    return [o for o in rows[0].overrides if o in shared]


def varying_overrides(row: JobRow, common: Sequence[str]) -> str:
    return " ".join(o for o in row.overrides if o not in common)


@writer
def write_csv(rows: Sequence[JobRow], path: Path) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=COLUMNS)
        table.writeheader()
        table.writerows({**asdict(row), "overrides": " ".join(row.overrides)} for row in rows)
    return path


def _shorten(text: str | None, limit: int = MD_ERROR_CHARS) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    # a pipe or newline would break the markdown table
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: Sequence[JobRow], title: str) -> str:
    common = common_overrides(rows)
    failed = sum(row.status == "failed" for row in rows)
    lines = [
        f"# Sweep summary: {title}",
        "",
        f"{len(rows)} jobs, {len(rows) - failed} ok, {failed} failed. Ranked by best val acc."
        + (f" Whole error messages: {SUMMARY_CSV} and each job's {JOB_STATUS_FILE}." if failed else ""),
    ]
    if common:
        lines.append(f"Common to all jobs: `{' '.join(common)}`")
    lines += [
        "",
        "| rank | job | status | best val acc | test acc | best epoch | epochs | wall time (s) | overrides | error |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        cells = [
            row.rank,
            row.job,
            row.status,
            row.best_val_acc,
            row.test_acc,
            row.best_epoch,
            row.epochs_run,
            _cell(row.wall_time_s, 1),
            varying_overrides(row, common),
            _shorten(row.error),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def read_val_acc(metrics_csv: Path) -> tuple[list[int], list[float]]:
    """(epochs, val_acc) from a CSVLogger file: one row per epoch carries val_acc, other rows leave it empty."""
    epochs: list[int] = []
    values: list[float] = []
    with metrics_csv.open(newline="") as handle:
        for record in csv.DictReader(handle):
            if record.get("val_acc") and record.get("epoch"):
                epochs.append(int(float(record["epoch"])))
                values.append(float(record["val_acc"]))
    return epochs, values


def plot_val_acc(rows: Sequence[JobRow], path: Path) -> Path | None:
    """All jobs' val acc curves in one figure; None when no job logged val_acc yet."""
    curves = []
    common = common_overrides(rows)
    for row in rows:
        metrics = Path(row.output_dir) / METRICS_CSV
        if metrics.is_file():
            epochs, values = read_val_acc(metrics)
            if epochs:
                curves.append((f"#{row.job} {varying_overrides(row, common)}".strip(), epochs, values))
    if not curves:
        return None

    import matplotlib.pyplot as plt

    from digitcls.reports.plots import save_figure  # imports matplotlib headless, only when plotting

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, epochs, values in curves:
        ax.plot(epochs, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val acc")
    ax.set_title("Validation accuracy per job")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right", ncol=1 if len(curves) <= 12 else 2)
    fig.tight_layout()
    return save_figure(fig, path)


def write_sweep_summary(sweep_dir: Path, plot: bool = True) -> tuple[list[JobRow], list[Path]]:
    """Write summary.csv and summary.md (and val_acc_curves.png) into ``sweep_dir``: (rows, files written)."""
    rows = collect(sweep_dir)
    written = [write_csv(rows, sweep_dir / SUMMARY_CSV), sweep_dir / SUMMARY_MD]
    atomic.write_text(written[1], to_markdown(rows, str(sweep_dir)))
    curves = plot_val_acc(rows, sweep_dir / CURVES_PNG) if plot else None
    return rows, written + ([curves] if curves else [])
