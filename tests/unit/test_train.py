"""Training in-process: overrides reach the model and Trainer, resume, checkpoints (the README's command in a real
process: tests/e2e/test_train.py; bad config values: test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from digitcls.errors import DataError
from digitcls.train import train
from tests.helpers import TINY_TRAIN as FAST
from tests.helpers import compose_train


def paths_of(tiny_folders: Path, out: Path) -> list[str]:
    return [
        f"train_path={tiny_folders / 'train'}",
        f"val_path={tiny_folders / 'val'}",
        f"test_path={tiny_folders / 'test'}",
        f"output_dir={out}",
    ]


def test_top_level_overrides_reach_the_model_and_trainer(tiny_folders: Path, tmp_path: Path) -> None:
    cfg = compose_train([*FAST, *paths_of(tiny_folders, tmp_path), "optimizer=SGD", "scheduler=step-2-0.5",
                         "epochs=2", "freeze_nonlinear_epoch=1", "random_seed=0"])
    summary = train(cfg)
    assert summary["epochs_run"] == 2
    ckpt = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["optimizer"] == "SGD"
    assert ckpt["hyper_parameters"]["scheduler"] == "step-2-0.5"


def test_last_ckpt_is_rewritten_every_epoch_even_without_improvement(tiny_folders: Path, tmp_path: Path) -> None:
    """Weights and BatchNorm statistics that (almost) do not move keep val_acc flat: only epoch 0 is an
    improvement, yet last.ckpt must follow every epoch (Lightning alone rewrites it only with a new best)."""
    summary = train(compose_train([*FAST, *paths_of(tiny_folders, tmp_path), "epochs=3", "learning_rate=1e-12",
                                   "bn_momentum=1e-9", "scheduler=none", "augment=null"]))
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt", Path(summary["best_checkpoint"]).name]
    assert summary["best_epoch"] == 0
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 3 * 13  # 200 images in batches of 16


def test_resume_from_last_checkpoint_continues_at_next_epoch(tiny_folders: Path, tmp_path: Path) -> None:
    # an epoch-based schedule: a one-cycle schedule is sized for its run and cannot be extended
    schedule = "scheduler=step-1-0.5"
    first = train(compose_train([*FAST, *paths_of(tiny_folders, tmp_path / "a"), schedule]))
    last = Path(first["best_checkpoint"]).parent / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    resumed = train(compose_train([*FAST, *paths_of(tiny_folders, tmp_path / "b"), schedule, "epochs=2",
                                   f"ckpt_path={last}"]))
    assert resumed["epochs_run"] == 2
    # the resumed run trained epoch 1 only: epoch 0 came from the checkpoint
    metrics = pd.read_csv(tmp_path / "b" / "metrics.csv")
    logged_epochs = set(metrics.dropna(subset=["train_loss_epoch"])["epoch"].astype(int))
    assert logged_epochs == {1}


def test_missing_data_error_type(tmp_path: Path) -> None:
    cfg = compose_train([*FAST, "train_path=a/train", "val_path=b/val", "test_path=c/test", f"output_dir={tmp_path}"])
    with pytest.raises(DataError, match="train_path"):
        train(cfg)


@pytest.mark.parametrize(
    ("scheduler", "epochs_run"),
    [("onecycle", 3), ("cosine", 3), ("default-0.5-5", 2)],  # plateau: epoch 1 does not beat epoch 0, patience 1
)
def test_a_scheduled_run_ends_where_its_schedule_ends(
    tiny_folders: Path, tmp_path: Path, scheduler: str, epochs_run: int
) -> None:
    """Val accuracy made to stall from the first epoch (weights and BatchNorm statistics that do not move):
    early stopping (patience 1) ends a plateau-driven run after epoch 1, while one-cycle and cosine runs go on
    to their last epoch, where their schedule has annealed."""
    summary = train(compose_train([*FAST, *paths_of(tiny_folders, tmp_path), "epochs=3", "early_stop_patient=1",
                                   f"scheduler={scheduler}", "learning_rate=1e-12", "bn_momentum=1e-9",
                                   "augment=null", "try_to_train_items=32"]))
    assert summary["best_epoch"] == 0  # val accuracy stalled after the first epoch
    assert summary["epochs_run"] == epochs_run
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == epochs_run - 1
