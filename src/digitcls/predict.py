"""`make predict` / `python -m digitcls.predict`: label every image under ``test_path`` into ``pre.csv``.

Batched (never one image at a time), keyed by the path relative to ``test_path`` (equal file names in two
folders never collide), labelled with class *names*, written atomically. Unreadable images go to
``pre_errors.csv`` and do not stop the run.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from natsort import natsort_keygen
from omegaconf import DictConfig
from rich.progress import track
from torch.utils.data import DataLoader

from digitcls.atomic import atomic_path, writer
from digitcls.cli import friendly_errors
from digitcls.data.datamodule import PredictFolderDataset
from digitcls.data.images import DEFAULT_MAX_IMAGE_PIXELS, read_image
from digitcls.errors import DataError
from digitcls.inference import Predictor, load_predictor
from digitcls.inputs import check_folders
from digitcls.preprocess import PREPROCESSORS
from digitcls.reports.plots import image_grid
from digitcls.runs import newest_best_checkpoint, writable_folder
from digitcls.schema import validated

COLUMNS = ["image_id", "label", "confidence"]


@writer
def write_csv_atomically(frame: pd.DataFrame, path: str | Path) -> Path:
    """Temp file in the same folder, then rename: readers see the old file or the new one, never half.

    Always valid UTF-8: a file name that is not (undecodable bytes, kept by Python as surrogates) is written
    with backslash escapes instead of failing the whole file. Commas, quotes and newlines in names are
    quoted, so pandas reads every name back as it was."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f", errors="backslashreplace")
    return Path(path)


def label_folder(
    predictor: Predictor, root: str | Path, preprocess: str = "none", batch_size: int = 256, num_workers: int = 0,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions (image_id, label, confidence) sorted by image_id, and the unreadable files (path, reason),
    files declaring more than ``max_image_pixels`` included."""
    dataset = PredictFolderDataset(
        root, predictor.img_size, preprocess=PREPROCESSORS[preprocess], max_image_pixels=max_image_pixels
    )
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=dataset.collate,
        persistent_workers=False,
    )
    ids: list[str] = []
    labels: list[str] = []
    confidences: list[float] = []
    errors: list[tuple[str, str]] = []
    for batch in track(loader, description="labelling", total=len(loader)):
        errors.extend((bad.path, bad.reason) for bad in batch.errors)
        if not batch.paths:
            continue
        confidence, index = predictor.probabilities(batch.images).max(dim=1)
        ids.extend(batch.paths)
        labels.extend(predictor.class_names[i] for i in index.tolist())
        confidences.extend(confidence.tolist())
    predictions = pd.DataFrame({"image_id": ids, "label": labels, "confidence": confidences}, columns=COLUMNS)
    predictions = predictions.sort_values("image_id", key=natsort_keygen(), ignore_index=True)
    return predictions, pd.DataFrame(errors, columns=["path", "reason"])


def true_class(image_id: str, class_names: list[str]) -> str | None:
    """The truth when the image's parent folder is named after a class (as in data/test/<digit>/)."""
    parent = Path(image_id).parent.name
    return parent if parent in class_names else None


def prediction_grid(
    predictions: pd.DataFrame, root: Path, class_names: list[str], preprocess: str, count: int, seed: int,
    path: str | Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Path:
    rows = random.Random(seed).sample(range(len(predictions)), min(count, len(predictions)))
    images, titles, wrong = [], [], []
    transform = PREPROCESSORS[preprocess]
    for row in sorted(rows):
        image_id, label, confidence = predictions.iloc[row][COLUMNS]
        image = read_image(root / image_id, max_image_pixels)
        images.append(transform(image) if transform else image)
        truth = true_class(image_id, class_names)
        wrong.append(truth is not None and truth != label)
        titles.append(f"{label} ({confidence:.0%})" + (f"\ntrue {truth}" if wrong[-1] else ""))
    return image_grid(images, titles, wrong, path, suptitle=f"predictions on {root} (red: wrong)")


def predict(cfg: DictConfig) -> dict[str, Any]:
    cfg = validated(cfg, "predict")
    check_folders(cfg, ["test_path"])
    for key in ("output", "errors_output", "grid_output"):
        if cfg[key]:
            writable_folder(Path(cfg[key]).parent, key)
    model_path = Path(cfg.model_path) if cfg.model_path else newest_best_checkpoint()
    predictor = load_predictor(model_path)
    root = Path(cfg.test_path)
    started = time.perf_counter()
    predictions, errors = label_folder(
        predictor, root, cfg.preprocess, cfg.batch_size, cfg.num_workers, cfg.max_image_pixels
    )
    elapsed = time.perf_counter() - started
    if predictions.empty:
        raise DataError(f"test_path: none of the images under {root} could be read; see the warnings above.")
    write_csv_atomically(predictions, cfg.output)
    if len(errors):
        write_csv_atomically(errors, cfg.errors_output)
    else:
        Path(cfg.errors_output).unlink(missing_ok=True)  # a stale list from an earlier run would mislead
    if cfg.grid_output and cfg.grid_size > 0:
        prediction_grid(predictions, root, predictor.class_names, cfg.preprocess, cfg.grid_size,
                        cfg.random_seed, cfg.grid_output, cfg.max_image_pixels)
    rate = len(predictions) / elapsed if elapsed > 0 else float("inf")
    print(f"labelled {len(predictions)} images with {model_path} -> {cfg.output} ({rate:.0f} images/s)")
    if len(errors):
        print(f"{len(errors)} unreadable image(s) listed in {cfg.errors_output}")
    return {"images": len(predictions), "errors": len(errors), "images_per_s": rate, "model_path": str(model_path)}


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    friendly_errors(predict)(cfg)


if __name__ == "__main__":
    main()
