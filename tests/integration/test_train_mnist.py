"""The README's commands on real MNIST (skipped when ../shared/data/mnist is absent).

One project folder for the module: `python -m digitcls.train +experiment=mbv3 ...` prepares the data
itself (data/ is missing), trains one epoch on a 10,000-image subset at 32 px, and must reach 95 % test
accuracy; then `python -m digitcls.predict` with no arguments labels the 10,000 test images from the
newest run, and `python -m digitcls.evaluate` agrees with pre.csv.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import MNIST, MNIST_FILES, needs_real_mnist, run_ok

# One epoch over 10,000 images is ~80 steps: SGD with a one-cycle schedule gets furthest in so few.
ONE_EPOCH = ["try_to_train_items=10000", "epochs=1", "img_size=32", "optimizer=SGD", "learning_rate=0.1",
             "scheduler=onecycle", "batch_size=64", "augment=null", "trainer.enable_progress_bar=false"]

# the module fixture (real MNIST, run once) counts towards the first test's time
pytestmark = [pytest.mark.integration, needs_real_mnist, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project folder holding only the raw IDX files, where torchvision looks for them."""
    project = tmp_path_factory.mktemp("mnist_project")
    raw = project / "data" / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(MNIST / name, raw / name)
    return project


@pytest.fixture(scope="module")
def trained(project: Path) -> dict:
    result = run_ok("digitcls.train", ["+experiment=mbv3", *ONE_EPOCH], project)
    assert "== digitcls training summary ==" in result.stdout
    (summary_file,) = (project / "outputs").rglob("summary.json")
    return json.loads(summary_file.read_text())


def test_train_prepares_data_and_reaches_95_percent(project: Path, trained: dict) -> None:
    assert sum(1 for _ in (project / "data" / "test").rglob("*.png")) == 10_000
    assert trained["test_acc"] >= 0.95, trained
    best = Path(trained["best_checkpoint"])
    assert best.name.startswith("mobilenetv3_e0_") and (best.parent / "last.ckpt").is_file()


def test_predict_then_evaluate_agree(project: Path, trained: dict) -> None:
    result = run_ok("digitcls.predict", [], project)
    assert "images/s" in result.stdout
    predictions = pd.read_csv(project / "pre.csv", dtype={"label": str})
    assert len(predictions) == 10_000 and predictions.image_id.is_unique
    accuracy = (predictions.image_id.str.split("/").str[0] == predictions.label).mean()
    assert accuracy == pytest.approx(trained["test_acc"], abs=1e-6)
    assert (project / "predictions.png").stat().st_size > 10_000

    run_ok("digitcls.evaluate", ["hydra.run.dir=outputs/eval/check"], project)
    metrics = json.loads((project / "outputs" / "eval" / "check" / "metrics.json").read_text())
    assert metrics["n_images"] == 10_000
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_photos_read_better_with_mnist_preprocessing(project: Path, trained: dict, tmp_path: Path) -> None:
    import cv2

    from digitcls.inference import load_predictor
    from digitcls.predict import label_folder
    from tests.helpers import render_digit

    photos = tmp_path / "photos"
    for digit in range(10):
        for k, (at, thickness) in enumerate([((30, 160), 14), ((120, 180), 18), ((200, 150), 12)]):
            folder = photos / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{k}.jpg"), cv2.cvtColor(render_digit(digit, at=at, thickness=thickness),
                                                             cv2.COLOR_RGB2BGR))
    predictor = load_predictor(trained["best_checkpoint"])

    def accuracy(preprocess: str) -> float:
        predictions, _ = label_folder(predictor, photos, preprocess=preprocess)
        return float((predictions.image_id.str.split("/").str[0] == predictions.label).mean())

    raw, prepared = accuracy("none"), accuracy("mnist")
    assert prepared > raw and prepared >= 0.5, (raw, prepared)
