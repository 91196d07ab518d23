"""Sweep summary, its Hydra callback, `python -m digitcls.summarize` and the sweep/launcher configs,
on fake sweep folders laid out the way Hydra and digitcls.train leave them (no training here)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from digitcls.callbacks.hydra_summary import SweepSummary
from digitcls.errors import ConfigError
from digitcls.reports.sweep import (
    COLUMNS,
    JOB_STATUS_FILE,
    UNFINISHED,
    collect,
    read_val_acc,
    write_sweep_summary,
)
from digitcls.summarize import main as summarize_main

COMMON = ["+experiment=mbv3", "epochs=2"]


def fake_job(
    sweep: Path,
    num: int,
    overrides: list[str],
    summary: dict | None = None,
    status: dict | None = None,
    val_acc: list[float] | None = None,
) -> Path:
    """A job folder as Hydra + digitcls.train leave it: .hydra/*, summary.json, job_status.json, metrics.csv."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"job": {"num": num, "name": "train"}}})
    )
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if status is not None:
        (job / JOB_STATUS_FILE).write_text(json.dumps(status))
    if val_acc is not None:
        # CSVLogger interleaves train rows (no val_acc) with one validation row per epoch
        lines = ["epoch,step,train_loss,val_acc,val_loss"]
        for epoch, acc in enumerate(val_acc):
            lines += [f"{epoch},{epoch * 10 + 9},0.5,,", f"{epoch},{epoch * 10 + 9},,{acc},0.4"]
        (job / "metrics.csv").write_text("\n".join(lines) + "\n")
    return job


def ok_summary(val: float, test: float, epoch: int = 1) -> dict:
    return {
        "best_val_acc": val,
        "test_acc": test,
        "best_epoch": epoch,
        "epochs_run": 2,
        "wall_time_s": 3.0,
        "best_checkpoint": f"/ckpt/mobilenetv3_e{epoch}_{val:.5f}.ckpt",
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Four jobs: two good (job 1 the best), one failed with its error, one that never finished."""
    sweep = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    fake_job(
        sweep,
        0,
        [*COMMON, "optimizer=Adam", "scheduler=step-1-0.5"],
        ok_summary(0.80, 0.79),
        {"job": 0, "status": "ok", "error": None, "wall_time_s": 12.5},
        val_acc=[0.6, 0.8],
    )
    fake_job(
        sweep,
        1,
        [*COMMON, "optimizer=SGD", "scheduler=step-1-0.5"],
        ok_summary(0.90, 0.88),
        {"job": 1, "status": "ok", "error": None, "wall_time_s": 11.0},
        val_acc=[0.7, 0.9],
    )
    error = "ConfigError: scheduler: 'bogus-1' is not a valid | schedule\nuse step-S-G"
    fake_job(
        sweep,
        2,
        [*COMMON, "optimizer=Adam", "scheduler=bogus-1"],
        None,
        {"job": 2, "status": "failed", "error": error, "wall_time_s": 0.4},
    )
    fake_job(sweep, 3, [*COMMON, "optimizer=SGD", "scheduler=bogus-1"])
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_are_ranked_best_first_and_failed_last(sweep: Path) -> None:
    rows = list(collect(sweep).itertuples())
    assert [(r.rank, r.job, r.status) for r in rows] == [
        (1, 1, "ok"),
        (2, 0, "ok"),
        (3, 2, "failed"),
        (4, 3, "failed"),
    ]
    best = rows[0]
    assert (best.best_val_acc, best.test_acc, best.best_epoch, best.epochs_run) == (0.90, 0.88, 1, 2)
    assert best.wall_time_s == 11.0  # the callback's wall time (whole job), not train's own
    assert best.overrides == [*COMMON, "optimizer=SGD", "scheduler=step-1-0.5"]
    assert rows[2].error.startswith("ConfigError: scheduler: 'bogus-1'")
    assert rows[3].error == UNFINISHED and math.isnan(rows[3].best_val_acc)


def test_summary_files(sweep: Path) -> None:
    rows, written = write_sweep_summary(sweep)
    assert [p.name for p in written] == ["summary.csv", "summary.md", "val_acc_curves.png"]

    table = read_csv(sweep / "summary.csv")
    assert list(table[0]) == COLUMNS
    assert [(r["job"], r["status"]) for r in table] == [
        ("1", "ok"),
        ("0", "ok"),
        ("2", "failed"),
        ("3", "failed"),
    ]
    assert table[0]["overrides"] == "+experiment=mbv3 epochs=2 optimizer=SGD scheduler=step-1-0.5"
    assert float(table[0]["best_val_acc"]) == 0.90 and table[2]["best_val_acc"] == ""
    assert "bogus-1" in table[2]["error"]

    markdown = (sweep / "summary.md").read_text()
    assert "4 jobs, 2 ok, 2 failed" in markdown
    assert "Common to all jobs: `+experiment=mbv3 epochs=2`" in markdown
    body = [line for line in markdown.splitlines() if line.startswith("|") and line.split("|")[1].strip().isdigit()]
    assert len(body) == 4
    cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", body[0])[1:-1]]
    assert cells == ["1", "1", "ok", "0.9000", "0.8800", "1", "2", "11.0", "optimizer=SGD scheduler=step-1-0.5", ""]
    # the error's pipe and newline must not break the table
    assert "valid \\| schedule use step-S-G" in body[2]
    assert len(re.split(r"(?<!\\)\|", body[2])) == 12  # 10 cells between the outer pipes
    assert (sweep / "val_acc_curves.png").stat().st_size > 1000


def test_metrics_csv_gives_one_point_per_epoch(sweep: Path) -> None:
    curve = read_val_acc(sweep / "0" / "metrics.csv")
    assert (curve.epoch.tolist(), curve.val_acc.tolist()) == ([0, 1], [0.6, 0.8])


def test_no_curves_without_metrics(tmp_path: Path) -> None:
    fake_job(
        tmp_path, 0, ["optimizer=Adam"], None, {"job": 0, "status": "failed", "error": "x", "wall_time_s": 1}
    )
    _, written = write_sweep_summary(tmp_path)
    assert [p.name for p in written] == ["summary.csv", "summary.md"]


def test_job_number_comes_from_hydra_not_the_folder_name(tmp_path: Path) -> None:
    job = fake_job(tmp_path, 7, ["lr=1"], ok_summary(0.5, 0.5))
    job.rename(tmp_path / "lr=1")
    (row,) = collect(tmp_path).itertuples()
    assert row.job == 7 and row.status == "ok" and row.error is None


def test_summarize_cli_rebuilds(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summarize_main([str(sweep)])
    out = capsys.readouterr().out
    assert re.search(r"\|\s+1 \|\s+1 \| ok ", out) and "val_acc_curves.png" in out
    assert len(read_csv(sweep / "summary.csv")) == 4


def test_summarize_cli_names_the_fix_for_a_wrong_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        summarize_main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no sweep jobs found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- the callback


def job_config(output_dir: Path, mode: RunMode = RunMode.MULTIRUN, num: int = 3) -> DictConfig:
    return OmegaConf.create(
        {
            "hydra": {
                "mode": mode,
                "runtime": {"output_dir": str(output_dir)},
                "job": {"num": num},
                "sweep": {"dir": str(output_dir.parent)},
            }
        }
    )


def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    callback, config = SweepSummary(), job_config(tmp_path / "3")
    (tmp_path / "3").mkdir()
    callback.on_job_start(config, task_function=lambda cfg: None)
    job_return = JobReturn(
        status=JobStatus.FAILED, _return_value=ConfigError("scheduler: 'bogus-1' is invalid")
    )
    callback.on_job_end(config, job_return)

    status = json.loads((tmp_path / "3" / JOB_STATUS_FILE).read_text())
    assert status["status"] == "failed" and status["job"] == 3
    assert status["error"] == "ConfigError: scheduler: 'bogus-1' is invalid"
    assert status["wall_time_s"] >= 0
    # what the sweeper sees: a job that returned None, not an exception that would end the sweep
    assert job_return.status == JobStatus.COMPLETED and job_return.return_value is None


def test_ok_job_keeps_its_return_value(tmp_path: Path) -> None:
    callback, config = SweepSummary(), job_config(tmp_path / "0", num=0)
    (tmp_path / "0").mkdir()
    callback.on_job_start(config, task_function=lambda cfg: None)
    job_return = JobReturn(status=JobStatus.COMPLETED, _return_value=0.93)
    callback.on_job_end(config, job_return)
    assert json.loads((tmp_path / "0" / JOB_STATUS_FILE).read_text())["status"] == "ok"
    assert job_return.return_value == 0.93


def test_single_runs_and_other_ranks_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "0").mkdir()
    failed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("boom"))
    SweepSummary().on_job_end(job_config(tmp_path / "0", mode=RunMode.RUN), failed)
    assert failed.status == JobStatus.FAILED  # a single run keeps Hydra's own error handling
    monkeypatch.setenv("SLURM_PROCID", "1")
    SweepSummary().on_job_end(
        job_config(tmp_path / "0"), JobReturn(status=JobStatus.COMPLETED, _return_value=1.0)
    )
    assert not (tmp_path / "0" / JOB_STATUS_FILE).exists()


def test_multirun_end_writes_the_summary(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SweepSummary(plot=False).on_multirun_end(job_config(sweep / "0"))
    assert len(read_csv(sweep / "summary.csv")) == 4
    assert not (sweep / "val_acc_curves.png").exists()
    assert "4 jobs, 2 ok, 2 failed" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- the configs


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(
            config_name="train", overrides=["+experiment=mbv3", *overrides], return_hydra_config=True
        )


def test_callback_is_registered() -> None:
    cfg = compose_train([])
    assert isinstance(instantiate(cfg.hydra.callbacks.sweep_summary), SweepSummary)
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"


def test_joblib_launcher_config() -> None:
    cfg = compose_train(["+launcher=joblib"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    assert cfg.num_workers == 0 and cfg.trainer.accelerator == "cpu"


def test_slurm_launcher_matches_tasks_to_devices() -> None:
    cfg = compose_train(["+launcher=slurm", "hydra.launcher.partition=gpu"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (
        cfg.trainer.accelerator,
        cfg.trainer.devices,
        launcher.tasks_per_node,
        launcher.gpus_per_node,
    ) == ("gpu", 1, 1, 1)
    ddp = compose_train(["+launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"])
    assert ddp.trainer.strategy == "ddp"
    assert (
        ddp.hydra.launcher.tasks_per_node,
        ddp.hydra.launcher.gpus_per_node,
        ddp.hydra.launcher.nodes,
    ) == (4, 4, 2)


def test_optuna_sweeper_config() -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_train(["+sweep=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {"learning_rate", "weight_decay", "label_smooth"}
    assert sweeper.sampler.seed == cfg.random_seed
