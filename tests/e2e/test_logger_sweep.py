"""`logger=` in a real two-job sweep: each tracker's files read back by its own reader.

`python -m digitcls.train -m` runs in this process (Hydra's basic launcher runs the jobs one after the other),
offline: TensorBoard's EventAccumulator reads the event files, `mlflow.search_runs` the SQLite store, and the
W&B offline run file is decoded record by record. W&B starts its own service process for the runs, and the
whole sweep takes about 25 s, hence e2e rather than unit.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig

from digitcls.loggers import folder_name
from tests.helpers import TINY_TRAIN

SEED_OF_JOB = {"0": 1, "1": 2}  # the swept key, and what each job folder gets
SWEEP_ARGS = [
    "+experiment=mbv3",
    *TINY_TRAIN,
    "try_to_train_items=32",
    "logger=[csv,tensorboard,mlflow,wandb]",
]


def wandb_records(path: Path) -> Iterator:
    """The records of a W&B run file: a 7-byte header (":W&B", magic, version), then LevelDB-log chunks
    (crc32 4 bytes, length 2, type 1: full/first/middle/last) in 32 KiB blocks, each a protobuf Record."""
    from wandb.proto import wandb_internal_pb2

    block, data = 32768, path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = struct.unpack_from("<HB", data, position + 4)
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def wandb_run(folder: Path) -> dict:
    """Name, group, config and summary of an offline run folder, from its .wandb file."""
    run: dict = {"config": {}, "summary": {}}
    for record in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(name=record.run.display_name, group=record.run.run_group, project=record.run.project)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "summary":
            run["summary"].update(
                {"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in record.summary.update}
            )
            continue
        else:
            continue
        run["config"].update({u.key: json.loads(u.value_json) for u in updates})
    return run


def override_dirname(job: Path) -> str:
    """The job's overrides as Hydra recorded them for it (sorted, joined by commas)."""
    return yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["override_dirname"]


@pytest.fixture
def in_process_sweep(tiny_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Runs `python -m digitcls.train -m ...` in this process from a project folder; yields the sweep folder.
    Hydra's job config is a process-wide singleton: reset afterwards so later tests see a plain run."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (project / "data" / split).symlink_to(tiny_folders / split, target_is_directory=True)
    monkeypatch.chdir(project)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline must come from the logger config
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")  # where mlflow.search_runs looks
    sweep = project / "multirun" / "sweep"
    argv = ["digitcls.train", "-m", *SWEEP_ARGS, "random_seed=1,2", f"hydra.sweep.dir={sweep}"]
    monkeypatch.setattr(sys, "argv", argv)
    from digitcls.train import main

    try:
        main()
        yield sweep
    finally:
        HydraConfig.instance().cfg = None


def test_sweep_jobs_reach_every_tracker_named_and_grouped(in_process_sweep: Path) -> None:
    sweep = in_process_sweep
    summaries = {job: json.loads((sweep / job / "summary.json").read_text()) for job in ("0", "1")}
    names = {job: override_dirname(sweep / job) for job in SEED_OF_JOB}
    assert all(f"random_seed={seed}," in names[job] for job, seed in SEED_OF_JOB.items())
    for job, summary in summaries.items():
        assert (sweep / job / "metrics.csv").is_file() and summary["test_acc"] is not None

    # TensorBoard: one folder per job under <sweep>/tensorboard, named after its overrides
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    assert sorted(p.name for p in (sweep / "tensorboard").iterdir()) == sorted(
        folder_name(n) for n in names.values()
    )
    for job, name in names.items():
        events = EventAccumulator(str(sweep / "tensorboard" / folder_name(name)))
        events.Reload()
        assert events.Scalars("test_acc")[-1].value == pytest.approx(summaries[job]["test_acc"])
        assert len(events.Scalars("val_acc")) == 1  # one epoch
        session = plugin_data_pb2.HParamsPluginData.FromString(
            events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        ).session_start_info
        assert session.hparams["batch_size"].number_value == 16  # from the composed config
        assert session.hparams["random_seed"].number_value == SEED_OF_JOB[job]

    # MLflow: the SQLite store in the working folder, one experiment per sweep, one run per job
    import mlflow

    runs = mlflow.search_runs(experiment_names=[str(sweep)])
    assert sorted(runs["tags.mlflow.runName"]) == sorted(names.values())
    for job, name in names.items():
        run = runs[runs["tags.mlflow.runName"] == name].iloc[0]
        assert run["status"] == "FINISHED" and run["tags.output_dir"] == str(sweep / job)
        assert run["metrics.test_acc"] == pytest.approx(summaries[job]["test_acc"])
        assert run["params.batch_size"] == "16" and run["params.trainer/max_epochs"] == "1"
        assert run["params.model_name"] == "mobilenetv3_small"  # the model's own hyperparameters, too

    # W&B: an offline run folder per job, grouped by the sweep
    for job, name in names.items():
        (folder,) = (sweep / job / "wandb").glob("offline-run-*")
        run = wandb_run(folder)
        assert (run["name"], run["group"], run["project"]) == (name, str(sweep), "digitcls")
        assert run["config"]["batch_size"] == 16 and run["config"]["random_seed"] == SEED_OF_JOB[job]
        assert run["summary"]["test_acc"] == pytest.approx(summaries[job]["test_acc"])
