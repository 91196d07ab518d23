"""`python -m digitcls.evaluate model_path=... eval_path=...`: metrics a user can trust, and pictures.

All from torchmetrics with ``average=`` explicit; the class mapping is the checkpoint's, never the folders'.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from digitcls.atomic import write_csv_atomically
from digitcls.cli import friendly_errors
from digitcls.data.datamodule import ImageFolderDataset, collate_labelled
from digitcls.data.folders import labelled_samples
from digitcls.data.images import DEFAULT_MAX_IMAGE_PIXELS, read_image
from digitcls.errors import DataError
from digitcls.inference import Predictor, load_predictor
from digitcls.inputs import check_folders
from digitcls.reports.plots import confusion_matrix_figure, image_grid
from digitcls.runs import newest_best_checkpoint, writable_folder, write_summary
from digitcls.schema import validated


def score_folder(
    predictor: Predictor, root: str | Path, batch_size: int = 256, num_workers: int = 0, on_bad_image: str = "skip",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Metric values, and one row per image (path, true, predicted, confidence) for the galleries."""
    samples = labelled_samples(
        Path(root), predictor.class_names, "eval", classes_from=f"the classes of model_path {predictor.path}"
    )
    dataset = ImageFolderDataset(samples, predictor.img_size, on_bad_image, max_image_pixels)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_labelled)
    n = len(predictor.class_names)
    per_class = {"precision": MulticlassPrecision, "recall": MulticlassRecall, "f1": MulticlassF1Score}
    metrics = MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=n, average="micro"),
            **{f"{name}_macro": metric(num_classes=n, average="macro") for name, metric in per_class.items()},
            **{name: metric(num_classes=n, average="none") for name, metric in per_class.items()},
            "confusion": MulticlassConfusionMatrix(num_classes=n),
        }
    )
    batches = []  # (true labels, confidence, predicted) of each batch
    for batch in loader:
        if batch is None:  # every image in it was unreadable (and skipped, with a warning)
            continue
        images, labels = batch
        probabilities = predictor.probabilities(images)
        metrics.update(probabilities, labels)
        batches.append((labels, *probabilities.max(dim=1)))
    if not batches:
        raise DataError(f"eval_path: no readable images under {root}.")
    true, confidence, predicted = (torch.cat(column).numpy() for column in zip(*batches, strict=True))
    rows = pd.DataFrame({"true": true, "predicted": predicted, "confidence": confidence})
    # skipped bad images are absent from the rows: match them to their files by decoding order
    if len(rows) == len(samples):
        rows.insert(0, "path", [str(path) for path, _ in samples])
    return metrics.compute(), rows


def per_class_table(values: dict[str, torch.Tensor], class_names: list[str]) -> pd.DataFrame:
    columns = {name: values[name].numpy() for name in ("precision", "recall", "f1")}
    return pd.DataFrame({"class": class_names, "support": values["confusion"].numpy().sum(axis=1), **columns})


def worst_mistakes(
    rows: pd.DataFrame, predictor: Predictor, k: int, path: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> Path | None:
    if "path" not in rows:
        return None
    wrong = rows[rows.true != rows.predicted].nlargest(k, "confidence")
    names = predictor.class_names
    titles = [f"true {names[t]} → {names[p]}\n{c:.0%}"
              for t, p, c in zip(wrong.true, wrong.predicted, wrong.confidence, strict=True)]
    return image_grid([read_image(p, max_image_pixels) for p in wrong.path], titles, [True] * len(wrong), path,
                      suptitle=f"the {len(wrong)} most confident mistakes")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    cfg = validated(cfg, "evaluate")
    check_folders(cfg, ["eval_path"])
    model_path = Path(cfg.model_path) if cfg.model_path else newest_best_checkpoint()
    predictor = load_predictor(model_path)
    output_dir = writable_folder(cfg.output_dir, "output_dir")
    started = time.perf_counter()
    values, rows = score_folder(
        predictor, cfg.eval_path, cfg.batch_size, cfg.num_workers, cfg.on_bad_image, cfg.max_image_pixels
    )
    table = per_class_table(values, predictor.class_names)
    confusion = values["confusion"].numpy()  # int64: torchmetrics counts in long
    write_csv_atomically(table, output_dir / "per_class.csv")
    write_csv_atomically(
        pd.DataFrame(confusion, index=predictor.class_names, columns=predictor.class_names).reset_index(
            names="true \\ predicted"), output_dir / "confusion_matrix.csv")
    confusion_matrix_figure(confusion, predictor.class_names, output_dir / "confusion_matrix.png")
    worst_mistakes(rows, predictor, cfg.worst_k, output_dir / "worst_mistakes.png", cfg.max_image_pixels)
    summary = {
        "checkpoint": str(model_path),
        "eval_path": str(cfg.eval_path),
        "n_images": int(confusion.sum()),
        **{key: float(values[key]) for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro")},
        "per_class": table.to_dict(orient="records"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_summary(output_dir, summary, name="metrics.json")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(
        f"\naccuracy {summary['accuracy']:.4%} | macro precision {summary['precision_macro']:.4f} "
        f"recall {summary['recall_macro']:.4f} F1 {summary['f1_macro']:.4f} | {summary['n_images']} images\n"
        f"outputs: {output_dir}/ (metrics.json, per_class.csv, confusion_matrix.csv/.png, worst_mistakes.png)"
    )
    return summary


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    return friendly_errors(evaluate)(cfg)["accuracy"]


if __name__ == "__main__":
    main()
