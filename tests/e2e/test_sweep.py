"""Hydra multiruns of `python -m digitcls.train` end to end on tiny data: numbered job folders, the
ranked summary written by the callback, failed jobs recorded without stopping the sweep."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest

from digitcls.summarize import main as summarize_main
from tests.helpers import TINY_TRAIN, data_paths, run_train

FAST = ["+experiment=mbv3", *TINY_TRAIN]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def override_of(row: dict[str, str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in row["overrides"].split(" ") if o.startswith(f"{key}="))


def test_two_by_two_sweep_with_failing_jobs(tiny_folders: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # one argv item, as bash passes 'scheduler="multi-1,2-0.5",bogus-1': the quotes keep the comma in the value
    result = run_train(
        [
            "-m",
            *FAST,
            *data_paths(tiny_folders),
            "optimizer=Adam,SGD",
            'scheduler="multi-1,2-0.5",bogus-1',
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()

    rows = read_csv(sweep / "summary.csv")
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4"]
    assert [row["status"] for row in rows] == ["ok", "ok", "failed", "failed"]
    ok, failed = rows[:2], rows[2:]
    assert {override_of(r, "scheduler") for r in ok} == {'"multi-1,2-0.5"'}
    assert float(ok[0]["best_val_acc"]) >= float(ok[1]["best_val_acc"])
    for row in ok:
        assert (
            row["error"] == "" and row["test_acc"] and row["best_epoch"] == "0" and row["epochs_run"] == "1"
        )
        assert float(row["wall_time_s"]) > 0 and Path(row["best_checkpoint"]).is_file()
    for row in failed:
        assert override_of(row, "scheduler") == "bogus-1" and row["best_val_acc"] == ""
        assert row["error"].startswith("ConfigError: scheduler: 'bogus-1'"), row["error"]
    assert {override_of(r, "optimizer") for r in failed} == {"Adam", "SGD"}
    for job in sweep.glob("[0-9]"):
        assert (job / "job_status.json").is_file()

    markdown = (sweep / "summary.md").read_text()
    assert "4 jobs, 2 ok, 2 failed" in markdown and markdown in result.stdout
    assert (sweep / "val_acc_curves.png").stat().st_size > 1000

    # the CLI rebuilds the same table from the job folders alone
    before = (sweep / "summary.csv").read_text()
    (sweep / "summary.csv").unlink()
    summarize_main([str(sweep)])
    assert (sweep / "summary.csv").read_text() == before


def test_named_grid_runs_every_combination_without_dash_m(tiny_folders: Path, tmp_path: Path) -> None:
    """+sweep=optim_grid is a multirun by itself; learning_rate=-1 fails every job before training, so
    this checks the 5 x 4 grid (and the quoted multi-10,20-0.1) in seconds."""
    sweep = tmp_path / "grid"
    result = run_train(
        [
            *FAST,
            *data_paths(tiny_folders),
            "+sweep=optim_grid",
            "learning_rate=-1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 20 and {row["status"] for row in rows} == {"failed"}
    assert all("learning_rate" in row["error"] for row in rows)
    grid = {(override_of(r, "optimizer"), override_of(r, "scheduler")) for r in rows}
    schedulers = ["default-0.1-3", "step-5-0.5", "SGDR-5-2", '"multi-10,20-0.1"']
    assert grid == set(itertools.product(["Adam", "AdamW", "SGD", "AdaBelief", "Ranger"], schedulers))
    assert "20 of 20 jobs failed" in result.stderr + result.stdout


def test_parallel_jobs_with_joblib(tiny_folders: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "joblib"
    result = run_train(
        [
            "-m",
            *FAST,
            *data_paths(tiny_folders),
            "+launcher=joblib",
            "learning_rate=0.002,-1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    rows = read_csv(sweep / "summary.csv")
    assert [(row["job"], row["status"]) for row in rows] == [("0", "ok"), ("1", "failed")]
    assert rows[0]["best_val_acc"] and "learning_rate" in rows[1]["error"]


def test_optuna_study_goes_on_after_a_failed_trial(tiny_folders: Path, tmp_path: Path) -> None:
    """With the seeded TPE sampler, trial 0 draws learning_rate=-1 (fails) and trial 1 draws 0.002."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    result = run_train(
        [
            *FAST,
            *data_paths(tiny_folders),
            "+sweep=optuna",
            "hydra.sweeper.n_trials=2",
            "learning_rate=choice(0.002,-1)",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(sweep / "summary.csv")
    assert [(row["job"], row["status"], override_of(row, "learning_rate")) for row in rows] == [
        ("1", "ok", "0.002"),
        ("0", "failed", "-1"),
    ]
    results = (sweep / "optimization_results.yaml").read_text()
    assert "learning_rate: 0.002" in results and "best_value" in results
