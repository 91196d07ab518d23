"""`python -m digitcls.train`, the README's command, in a real process on tiny generated data: it trains and
names its checkpoints. (Bad input in a real process: test_bad_inputs.py; every case in process:
tests/unit/test_bad_inputs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import TINY_TRAIN as FAST
from tests.helpers import run_module, run_train


@pytest.fixture
def project(tiny_folders: Path, tmp_path: Path) -> Path:
    """A project folder whose data/ holds the tiny dataset, so the default paths are used as written."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (project / "data" / split).symlink_to(tiny_folders / split, target_is_directory=True)
    return project


def test_readme_command_trains_and_names_checkpoints(project: Path) -> None:
    result = run_train(["+experiment=mbv3", *FAST, "epochs=3", "hydra.run.dir=outputs/run1"], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best val acc" in result.stdout and "test acc" in result.stdout
    run = project / "outputs" / "run1"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints
    best = [name for name in checkpoints if name != "last.ckpt"]
    summary = json.loads((run / "summary.json").read_text())
    assert len(best) == 1 and best[0].startswith(f"mobilenetv3_small_e{summary['best_epoch']}_"), checkpoints
    assert summary["best_checkpoint"].endswith(best[0])
    assert summary["class_names"] == [str(d) for d in range(10)]
    assert summary["best_val_acc"] >= 0.25 and summary["test_acc"] >= 0.25, summary  # it learnt: chance is 0.1
    assert (run / "metrics.csv").is_file() and (run / ".hydra" / "config.yaml").is_file()
    hparams = torch.load(run / "checkpoints" / best[0], map_location="cpu", weights_only=False)[
        "hyper_parameters"
    ]
    assert hparams["class_names"] == summary["class_names"]

    # quiet, useful logs: no third-party tips or deprecation noise, a model summary that counts FLOPs, and with
    # the progress bar off (as TINY_TRAIN has it) one line per epoch, its figures checked against metrics.csv
    for noise in ("💡 Tip", "LeafSpec", "exists and is not empty"):
        assert noise not in result.stderr, (noise, result.stderr[-3000:])
    assert "Total FLOPs" in result.stdout and "Total FLOPs: 0 " not in result.stdout + " ", result.stdout[
        -2000:
    ]
    line = next(line for line in result.stdout.splitlines() if line.startswith("epoch 1/"))
    epoch = pd.read_csv(run / "metrics.csv").dropna(subset=["train_loss_epoch"]).iloc[0]
    fields = dict(zip(line.split()[2::2], line.split()[3::2], strict=True))
    assert fields["train_loss"] == f"{epoch['train_loss_epoch']:.4f}", (line, epoch["train_loss_epoch"])
    first_val_acc = pd.read_csv(run / "metrics.csv").dropna(subset=["val_acc"]).iloc[0]["val_acc"]
    assert fields["val_acc"] == f"{first_val_acc:.4f}", line
    assert float(fields["images/s"]) > 0 and fields["elapsed"].count(":") == 2, line


@pytest.mark.parametrize(
    ("command", "key"),
    [
        ("train", "epochs"),
        ("predict", "test_path"),
        ("evaluate", "eval_path"),
        ("export", "format"),
        ("serve", "port"),
    ],
)
def test_each_commands_help_shows_only_what_it_uses(command: str, key: str, tmp_path: Path) -> None:
    """Only train composes config groups (experiment, trainer, logger, ...); the others' --help lists their keys."""
    result = run_module(
        f"digitcls.{command}" if command != "serve" else "digitcls.serve", ["--help"], tmp_path, 120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"\n{key}: " in result.stdout, result.stdout
    groups = ("experiment: ", "trainer: ", "logger: ", "launcher: ")
    if command == "train":
        assert all(group in result.stdout for group in groups), result.stdout
    else:
        assert not any(group in result.stdout for group in groups), result.stdout
        assert "== Keys ==" in result.stdout
