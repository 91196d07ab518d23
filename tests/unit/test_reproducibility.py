"""Two CPU runs with the same ``random_seed`` give identical metrics, weights and ``pre.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from digitcls.inference import load_predictor
from digitcls.predict import label_folder
from digitcls.train import build_trainer, train
from tests.helpers import TINY_TRAIN, compose_train

FAST = [
    *TINY_TRAIN,
    "epochs=2",
    "num_workers=2",  # the folder path with worker processes: seeded too
]


def run(data: Path, out: Path, *extra: str) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    paths = [f"{split}_path={data / split}" for split in ("train", "val", "test")]
    summary = train(compose_train([*FAST, *paths, f"output_dir={out}", *extra]))
    metrics = pd.read_csv(out / "metrics.csv")
    predictions, _ = label_folder(load_predictor(summary["best_checkpoint"]), data / "test")
    return summary, metrics, predictions


def test_same_seed_same_metrics_and_predictions(tiny_folders: Path, tmp_path: Path) -> None:
    first, first_metrics, first_predictions = run(tiny_folders, tmp_path / "a", "random_seed=0")
    second, second_metrics, second_predictions = run(tiny_folders, tmp_path / "b", "random_seed=0")

    for key in ("best_val_acc", "test_acc", "best_epoch", "epochs_run", "test_metrics"):
        assert first[key] == second[key], key
    pd.testing.assert_frame_equal(first_metrics, second_metrics)  # every logged loss, accuracy and LR
    pd.testing.assert_frame_equal(first_predictions, second_predictions)  # pre.csv's rows, to the last digit
    weights = [torch.load(s["best_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
               for s in (first, second)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    # and the seed matters: another one trains differently from its first epoch on
    _, other_metrics, _ = run(tiny_folders, tmp_path / "c", "random_seed=1", "epochs=1")

    def first_epoch_loss(metrics: pd.DataFrame) -> float:
        (loss,) = metrics[metrics["epoch"] == 0]["train_loss_epoch"].dropna()
        return loss

    assert first_epoch_loss(other_metrics) != first_epoch_loss(first_metrics)


def test_deterministic_reaches_the_trainer(tmp_path: Path) -> None:
    for value in (True, False):
        cfg = compose_train([*FAST, f"deterministic={str(value).lower()}"])
        trainer = build_trainer(cfg, tmp_path, callbacks=[])
        assert torch.are_deterministic_algorithms_enabled() is value
        assert trainer is not None
    torch.use_deterministic_algorithms(False)
