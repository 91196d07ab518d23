"""The README's commands on real MNIST (skipped when ../shared/data/mnist is absent).

One project folder for the module: `python -m digitcls.train +experiment=mbv3 ...` prepares the data
itself (data/ is missing), trains one epoch on a 10,000-image subset at 32 px, and must reach 95 % test
accuracy; then `python -m digitcls.predict` with no arguments labels the 10,000 test images from the
newest run, and `python -m digitcls.evaluate` agrees with pre.csv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO.parent / "shared" / "data" / "mnist"
RAW_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
# One epoch over 10,000 images is ~80 steps: SGD with a one-cycle schedule gets furthest in so few.
ONE_EPOCH = ["try_to_train_items=10000", "epochs=1", "img_size=32", "optimizer=SGD", "learning_rate=0.1",
             "scheduler=onecycle", "batch_size=64", "augment=null", "trainer.enable_progress_bar=false"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not all((MNIST / f).is_file() for f in RAW_FILES),
                       reason=f"real MNIST IDX files not found in {MNIST}"),
]


def run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project folder holding only the raw IDX files, where torchvision looks for them."""
    project = tmp_path_factory.mktemp("mnist_project")
    raw = project / "data" / "raw" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_FILES:
        shutil.copy(MNIST / name, raw / name)
    return project


@pytest.fixture(scope="module")
def trained(project: Path) -> dict:
    result = run(["-m", "digitcls.train", "+experiment=mbv3", *ONE_EPOCH], project)
    assert "== digitcls training summary ==" in result.stdout
    (summary_file,) = (project / "outputs").rglob("summary.json")
    return json.loads(summary_file.read_text())


def test_train_prepares_data_and_reaches_95_percent(project: Path, trained: dict) -> None:
    assert sum(1 for _ in (project / "data" / "test").rglob("*.png")) == 10_000
    assert trained["test_acc"] >= 0.95, trained
    best = Path(trained["best_checkpoint"])
    assert best.name.startswith("mobilenetv3_e0_") and (best.parent / "last.ckpt").is_file()


def test_predict_then_evaluate_agree(project: Path, trained: dict) -> None:
    result = run(["-m", "digitcls.predict"], project)
    assert "images/s" in result.stdout
    predictions = pd.read_csv(project / "pre.csv", dtype={"label": str})
    assert len(predictions) == 10_000 and predictions.image_id.is_unique
    accuracy = (predictions.image_id.str.split("/").str[0] == predictions.label).mean()
    assert accuracy == pytest.approx(trained["test_acc"], abs=1e-6)
    assert (project / "predictions.png").stat().st_size > 10_000

    run(["-m", "digitcls.evaluate", "hydra.run.dir=outputs/eval/check"], project)
    metrics = json.loads((project / "outputs" / "eval" / "check" / "metrics.json").read_text())
    assert metrics["n_images"] == 10_000
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_photos_read_better_with_mnist_preprocessing(project: Path, trained: dict, tmp_path: Path) -> None:
    import cv2

    from digitcls.inference import load_predictor
    from digitcls.predict import label_folder
    from tests.unit.test_evaluate_export import render_digit

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
