"""DDP on CPU with 2 processes (gloo): metrics synced across ranks, every test image counted once, and
DDP inside a Hydra multirun without the sweep being re-run in the child processes. One trimmed run (a
handful of training images) is in the default suite; the rest is slow (minutes): `make test-slow`."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from digitcls.data.datamodule import DigitDataModule
from digitcls.model.module import load_classifier
from tests.helpers import cli_env, data_paths, run_train

TINY = [
    "+experiment=mbv3",
    "model_name=mobilenetv3_small",
    "epochs=1",
    "img_size=32",
    "batch_size=8",
    "num_workers=0",
    "data_cache=false",
    "trainer.enable_progress_bar=false",
]
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def datamodule(root: Path, test_path: Path | None = None) -> DigitDataModule:
    dm = DigitDataModule(
        train_path=root / "train",
        val_path=root / "val",
        test_path=test_path or root / "test",
        img_size=(32, 32),
        batch_size=8,
        num_workers=0,
    )
    dm.setup("fit")
    return dm


def single_process_val_acc(checkpoint: Path, root: Path) -> float:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (results,) = trainer.validate(load_classifier(checkpoint), datamodule=datamodule(root), verbose=False)
    return results["val_acc"]


def half_right_test_folder(checkpoint: Path, root: Path, out: Path) -> Path:
    """Two copies of one test image: in the folder of the class the model predicts (right) and in another
    (wrong). With 2 ranks each sees one image, so only a synced metric reads exactly 0.5; an unsynced one
    reports rank 0's 1.0 or 0.0 (this works even for a model that predicts one class for everything)."""
    dm = datamodule(root)
    image, _ = dm.val_dataset[0]
    source, _ = dm.val_dataset.samples[0]
    model = load_classifier(checkpoint).eval()
    with torch.no_grad():
        predicted = dm.class_names[int(model(image[None]).argmax())]
    other = next(name for name in dm.class_names if name != predicted)
    for name in (predicted, other):
        (out / name).mkdir(parents=True)
        shutil.copy(source, out / name / "x.png")
    return out


def test_a_trimmed_ddp_run_syncs_val_acc_over_both_ranks(tiny_folders: Path, tmp_path: Path) -> None:
    """16 training images, then the 50 val images split 25 / 25: the val acc rank 0 reports is the one a single
    process computes on all 50 (unsynced, it would be rank 0's half)."""
    run = tmp_path / "ddp"
    result = run_train([*TINY, *DDP_CPU, *data_paths(tiny_folders), "try_to_train_items=16", "test_path=null",
                        f"hydra.run.dir={run}"], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran the same job in the same folder
    summary = json.loads((run / "summary.json").read_text())
    checkpoint = Path(summary["best_checkpoint"])
    assert summary["best_val_acc"] == pytest.approx(single_process_val_acc(checkpoint, tiny_folders), abs=1e-6)


@pytest.mark.slow
def test_ddp_metrics_cover_each_image_once(tiny_folders: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    result = run_train([*TINY, *DDP_CPU, *data_paths(tiny_folders), f"hydra.run.dir={run}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran the same job in the same folder
    assert result.stdout.count("== digitcls training summary ==") == 1  # printed by rank 0 only

    # 50 val images split 25 / 25: the synced val acc equals a single-process pass on the same checkpoint
    checkpoint = Path(summary["best_checkpoint"])
    assert summary["best_val_acc"] == pytest.approx(
        single_process_val_acc(checkpoint, tiny_folders), abs=1e-6
    )

    test_folder = half_right_test_folder(checkpoint, tiny_folders, tmp_path / "half_right")
    run_b = tmp_path / "ddp_test"
    result = run_train(
        [
            *TINY,
            *DDP_CPU,
            *data_paths(tiny_folders),
            f"test_path={test_folder}",
            f"model_path={checkpoint}",
            f"hydra.run.dir={run_b}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_b / "summary.json").read_text())["test_acc"] == pytest.approx(0.5)


@pytest.mark.slow
def test_multirun_with_ddp_spawn_runs_each_job_once(tiny_folders: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_train(
        [
            "-m",
            *TINY,
            *DDP_CPU,
            "trainer=ddp_spawn",
            *data_paths(tiny_folders),
            "optimizer=Adam,SGD",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert output.count("Launching 2 jobs") == 1  # the trap: children re-running `-m` launch the sweep again
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()
    with (sweep / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["ok", "ok"]
    for row in rows:
        assert row["best_val_acc"] and row["test_acc"] and row["epochs_run"] == "1", row


def uneven_test_folder(root: Path, out: Path, size: int = 23) -> Path:
    """The first ``size`` test images: 23 divides by neither the batch (8) nor the world size (2)."""
    images = sorted((root / "test").rglob("*.png"))[:size]
    for image in images:
        target = out / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target)
    return out


def single_process_evaluate(checkpoint: Path, folder: Path, run: Path) -> dict:
    """`python -m digitcls.evaluate` (one process, no sharding) on the same checkpoint and folder."""
    result = subprocess.run(
        [sys.executable, "-m", "digitcls.evaluate", f"model_path={checkpoint}", f"eval_path={folder}",
         "num_workers=0", f"hydra.run.dir={run}"],
        cwd=run.parent, env=cli_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("data_cache", ["false", "true"])
def test_ddp_test_acc_equals_single_process_evaluate_on_an_uneven_folder(
    data_cache: str, tiny_folders: Path, tmp_path: Path
) -> None:
    """2 gloo processes, 23 test images in batches of 8, in memory (TensorSplit) or per file: unpadded shards
    of 12 and 11 images, so DDP test_acc is exactly the one-process accuracy (a padded sampler scores 24)."""
    folder = uneven_test_folder(tiny_folders, tmp_path / "uneven")
    run = tmp_path / "ddp"
    result = run_train(
        [*TINY, *DDP_CPU, *data_paths(tiny_folders), f"data_cache={data_cache}", "try_to_train_items=40",
         f"test_path={folder}", f"hydra.run.dir={run}"],
        cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    reference = single_process_evaluate(Path(summary["best_checkpoint"]), folder, tmp_path / "eval")
    assert reference["n_images"] == 23
    assert summary["test_acc"] == pytest.approx(reference["accuracy"], abs=1e-9)
