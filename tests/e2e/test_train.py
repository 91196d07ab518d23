"""`python -m digitcls.train`, the README's command, in a real process on tiny generated data: it trains and
names its checkpoints. (Bad input in a real process: test_bad_inputs.py; every case in process:
tests/unit/test_bad_inputs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_TRAIN as FAST
from tests.helpers import run_train


@pytest.fixture
def project(tiny_folders: Path, tmp_path: Path) -> Path:
    """A project folder whose data/ holds the tiny dataset, so the default paths are used as written."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (project / "data" / split).symlink_to(tiny_folders / split, target_is_directory=True)
    return project


def test_readme_command_trains_and_names_checkpoints(project: Path) -> None:
    result = run_train(["+experiment=mbv3", *FAST, "hydra.run.dir=outputs/run1"], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best val acc" in result.stdout and "test acc" in result.stdout
    run = project / "outputs" / "run1"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints
    best = [name for name in checkpoints if name != "last.ckpt"]
    assert len(best) == 1 and best[0].startswith("mobilenetv3_small_e0_"), checkpoints
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_checkpoint"].endswith(best[0])
    assert summary["class_names"] == [str(d) for d in range(10)]
    assert 0.0 <= summary["test_acc"] <= 1.0
    assert (run / "metrics.csv").is_file() and (run / ".hydra" / "config.yaml").is_file()
    hparams = torch.load(run / "checkpoints" / best[0], map_location="cpu", weights_only=False)["hyper_parameters"]
    assert hparams["class_names"] == summary["class_names"]
