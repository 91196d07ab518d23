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

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from digitcls import atomic
from digitcls.runs import SUMMARY_FILE

JOB_STATUS_FILE = "job_status.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
CURVES_PNG = "val_acc_curves.png"
METRICS_CSV = "metrics.csv"
UNFINISHED = "unfinished: no summary.json nor job_status.json (killed, timed out, or still running)"
NO_SUMMARY = "ended without writing summary.json"
MD_ERROR_CHARS = 160  # summary.md stays readable; summary.csv and job_status.json keep the whole message
COLUMNS = ["rank", "job", "status", "best_val_acc", "test_acc", "best_epoch", "epochs_run", "wall_time_s",
           "overrides", "error", "output_dir", "best_checkpoint"]
# summary.md: column -> (heading, number format)
MD_COLUMNS = {"rank": ("rank", "g"), "job": ("job", "g"), "status": ("status", ""),
              "best_val_acc": ("best val acc", ".4f"), "test_acc": ("test acc", ".4f"),
              "best_epoch": ("best epoch", "g"), "epochs_run": ("epochs", "g"),
              "wall_time_s": ("wall time (s)", ".1f"), "varying": ("overrides", ""), "error": ("error", "")}


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job folder under the sweep: the ones where Hydra saved the job's overrides."""
    return sorted(p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def read_job(job_dir: Path) -> dict[str, Any]:
    """One row from a job folder; a job that left no summary.json is ``failed``."""
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    try:  # Hydra's job number, from the job's saved Hydra config (the folder name need not be it)
        job = int(yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        job = int(job_dir.name) if job_dir.name.isdigit() else None
    summary = _read_json(job_dir / SUMMARY_FILE)
    status = _read_json(job_dir / JOB_STATUS_FILE) or {}
    error = status.get("error")
    if summary is None and error is None:
        error = NO_SUMMARY if status else UNFINISHED
    failed = status.get("status") == "failed" or summary is None
    summary = summary or {}
    return {
        "job": job,
        "status": "failed" if failed else "ok",
        "best_val_acc": _finite(summary.get("best_val_acc")),
        "test_acc": _finite(summary.get("test_acc")),
        "best_epoch": summary.get("best_epoch"),
        "epochs_run": summary.get("epochs_run"),
        "wall_time_s": _finite(status.get("wall_time_s", summary.get("wall_time_s"))),
        "overrides": [str(o) for o in overrides],
        "error": error,
        "output_dir": str(job_dir),
        "best_checkpoint": summary.get("best_checkpoint"),
    }


def collect(sweep_dir: Path) -> pd.DataFrame:
    """One row per job folder under ``sweep_dir``, ranked: best val acc first (test acc, then job number, break
    ties); jobs without a score, then failed ones, last."""
    rows = pd.DataFrame([read_job(d) for d in job_dirs(sweep_dir)], columns=COLUMNS[1:])
    rows = rows.astype({"job": "Int64", "best_epoch": "Int64", "epochs_run": "Int64",
                        "best_val_acc": float, "test_acc": float, "wall_time_s": float})
    rows = rows.assign(failed=rows.status != "ok", unscored=rows.best_val_acc.isna()).sort_values(
        ["failed", "unscored", "best_val_acc", "test_acc", "job"], ascending=[True, True, False, False, True],
        na_position="last", kind="stable",
    )
    return rows.drop(columns=["failed", "unscored"]).assign(rank=range(1, len(rows) + 1))[COLUMNS]


def common_overrides(rows: pd.DataFrame) -> list[str]:
    """Overrides every job shares (e.g. ``+experiment=mbv3 epochs=1``): the table shows only the rest."""
    if len(rows) < 2:
        return []
    shared = set(rows.overrides.iloc[0]).intersection(*rows.overrides.iloc[1:])
    return [o for o in rows.overrides.iloc[0] if o in shared]


def _varying(rows: pd.DataFrame) -> pd.Series:
    common = common_overrides(rows)
    return rows.overrides.map(lambda overrides: " ".join(o for o in overrides if o not in common))


def to_markdown(rows: pd.DataFrame, title: str) -> str:
    common = common_overrides(rows)
    failed = int((rows.status == "failed").sum())
    lines = [
        f"# Sweep summary: {title}",
        "",
        f"{len(rows)} jobs, {len(rows) - failed} ok, {failed} failed. Ranked by best val acc."
        + (f" Whole error messages: {SUMMARY_CSV} and each job's {JOB_STATUS_FILE}." if failed else ""),
    ]
    if common:
        lines.append(f"Common to all jobs: `{' '.join(common)}`")
    error = rows.error.str.replace("\n", " ").str.replace("|", "\\|")  # a pipe or newline would break the table
    error = error.where(error.str.len() <= MD_ERROR_CHARS, error.str[: MD_ERROR_CHARS - 1].str.rstrip() + "…")
    shown = rows.assign(varying=_varying(rows), error=error)[list(MD_COLUMNS)]
    shown = shown.astype(object).where(shown.notna(), None)  # tabulate writes None as missingval
    headings, formats = zip(*MD_COLUMNS.values(), strict=True)
    table = shown.rename(columns=dict(zip(MD_COLUMNS, headings, strict=True))).to_markdown(
        index=False, floatfmt=formats, missingval="")
    return "\n".join([*lines, "", table]) + "\n"


def read_val_acc(metrics_csv: Path) -> pd.DataFrame:
    """epoch, val_acc from a CSVLogger file: one row per epoch carries val_acc, other rows leave it empty."""
    metrics = pd.read_csv(metrics_csv, usecols=lambda column: column in ("epoch", "val_acc"))
    return metrics.reindex(columns=["epoch", "val_acc"]).dropna().astype({"epoch": int})


def plot_val_acc(rows: pd.DataFrame, path: Path) -> Path | None:
    """All jobs' val acc curves in one figure; None when no job logged val_acc yet."""
    labels = ("#" + rows.job.astype(str) + " " + _varying(rows)).str.strip()
    curves = [read_val_acc(Path(d) / METRICS_CSV).assign(job=label)
              for d, label in zip(rows.output_dir, labels, strict=True) if (Path(d) / METRICS_CSV).is_file()]
    curves = pd.concat(curves) if curves else pd.DataFrame()
    if curves.empty:
        return None
    from digitcls.reports.plots import save_figure  # imports matplotlib headless, only when plotting

    axes = curves.pivot_table(index="epoch", columns="job", values="val_acc", sort=False).plot(
        marker="o", markersize=3, figsize=(9, 5.5), xlabel="epoch", ylabel="val acc", grid=True,
        title="Validation accuracy per job")
    axes.legend(fontsize="small", loc="lower right", ncol=1 if curves.job.nunique() <= 12 else 2)
    return save_figure(axes.figure, path)


def write_sweep_summary(sweep_dir: Path, plot: bool = True) -> tuple[pd.DataFrame, list[Path]]:
    """Write summary.csv and summary.md (and val_acc_curves.png) into ``sweep_dir``: (rows, files written)."""
    rows = collect(sweep_dir)
    csv_text = rows.assign(overrides=rows.overrides.str.join(" ")).to_csv(index=False)
    written = [atomic.write_text(sweep_dir / SUMMARY_CSV, csv_text),
               atomic.write_text(sweep_dir / SUMMARY_MD, to_markdown(rows, str(sweep_dir)))]
    curves = plot_val_acc(rows, sweep_dir / CURVES_PNG) if plot else None
    return rows, written + ([curves] if curves else [])
