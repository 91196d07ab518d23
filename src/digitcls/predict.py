"""`make predict` / `python -m digitcls.predict`: label every image under ``test_path`` into ``pre.csv``.

Fast to start (docs/inference.md): the model runs on onnxruntime when installed (:mod:`digitcls.inference`),
and torch, Lightning, pandas and matplotlib are imported only by the code that needs them
(``python -X importtime -m digitcls.predict --help``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
import numpy as np
from omegaconf import DictConfig

from digitcls.atomic import write_csv_atomically
from digitcls.cli import friendly_errors
from digitcls.data.images import DEFAULT_MAX_IMAGE_PIXELS, Preprocess, load_inputs, read_image
from digitcls.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from digitcls.inference import Predictor

COLUMNS = ["image_id", "label", "confidence"]
Decoded = tuple[np.ndarray, list[str], list[tuple[str, str]]]  # N x 3 x H x W uint8, their ids, (id, reason)


def decode_batch(
    paths: Sequence[Path], root: Path, size: tuple[int, int], preprocess: Preprocess | None, max_image_pixels: int
) -> Decoded:
    """The model inputs of ``paths`` as one batch: (images, their ids relative to ``root``, unreadable files)."""
    loaded, skipped = load_inputs(paths, size, preprocess, max_image_pixels)
    images = [image for _, image in loaded]
    batch = np.stack(images).transpose(0, 3, 1, 2) if images else np.empty((0, 3, *size), np.uint8)
    ids = [path.relative_to(root).as_posix() for path, _ in loaded]
    errors = [(path.relative_to(root).as_posix(), reason) for path, reason in skipped]
    return np.ascontiguousarray(batch), ids, errors


def decoded_batches(
    paths: list[Path], batch_size: int, threads: int, decode: Callable[[Sequence[Path]], Decoded]
) -> Iterator[Decoded]:
    """``decode`` of each run of ``batch_size`` paths, in order. With ``threads`` > 0, that many batches
    are decoded ahead by threads while the caller works on the current one (threads, not processes: the
    decoding is OpenCV, which releases the GIL, and threads start in microseconds)."""
    chunks = (paths[i : i + batch_size] for i in range(0, len(paths), batch_size))
    if threads == 0:
        yield from map(decode, chunks)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        ahead: deque[Future[Decoded]] = deque(pool.submit(decode, chunk) for chunk in islice(chunks, threads))
        while ahead:
            done = ahead.popleft().result()
            ahead.extend(pool.submit(decode, chunk) for chunk in islice(chunks, 1))
            yield done


def label_folder(
    predictor: Predictor, root: str | Path, preprocess: str = "none", batch_size: int = 256, num_workers: int = 0,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions (image_id, label, confidence) sorted by image_id, and the unreadable files (path, reason),
    files declaring more than ``max_image_pixels`` included. ``num_workers``: decoding threads."""
    import pandas as pd
    from natsort import natsort_keygen
    from rich.progress import track

    from digitcls.data.folders import unlabelled_samples
    from digitcls.preprocess import PREPROCESSORS

    root = Path(root)
    paths = unlabelled_samples(root)

    def decode(chunk: Sequence[Path]) -> Decoded:
        return decode_batch(chunk, root, predictor.img_size, PREPROCESSORS[preprocess], max_image_pixels)

    ids: list[str] = []
    labels: list[str] = []
    confidences: list[np.ndarray] = []
    errors: list[tuple[str, str]] = []
    batches = decoded_batches(paths, batch_size, num_workers, decode)
    for images, batch_ids, batch_errors in track(batches, description="labelling", total=math.ceil(len(paths) / batch_size)):
        errors.extend(batch_errors)
        if not batch_ids:
            continue
        probabilities = predictor.probabilities(images)
        ids.extend(batch_ids)
        labels.extend(predictor.class_names[i] for i in probabilities.argmax(axis=1).tolist())
        confidences.append(probabilities.max(axis=1))
    confidence = np.concatenate(confidences).astype(np.float64) if confidences else np.empty(0)
    predictions = pd.DataFrame({"image_id": ids, "label": labels, "confidence": confidence}, columns=COLUMNS)
    predictions = predictions.sort_values("image_id", key=natsort_keygen(), ignore_index=True)
    return predictions, pd.DataFrame(errors, columns=["path", "reason"])


def prediction_grid(
    predictions: pd.DataFrame, root: Path, class_names: list[str], preprocess: str, count: int, seed: int,
    path: str | Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Path:
    from digitcls.preprocess import PREPROCESSORS
    from digitcls.reports.plots import image_grid  # matplotlib: only when a picture is asked for

    images, titles, wrong = [], [], []
    transform = PREPROCESSORS[preprocess]
    sample = predictions.sample(min(count, len(predictions)), random_state=seed).sort_index()
    for image_id, label, confidence in sample[COLUMNS].itertuples(index=False):
        image = read_image(root / image_id, max_image_pixels)
        images.append(transform(image) if transform else image)
        truth = Path(image_id).parent.name  # the truth when the parent folder is a class (data/test/<digit>/)
        wrong.append(truth in class_names and truth != label)
        titles.append(f"{label} ({confidence:.0%})" + (f"\ntrue {truth}" if wrong[-1] else ""))
    return image_grid(images, titles, wrong, path, suptitle=f"predictions on {root} (red: wrong)")


def predict(cfg: DictConfig) -> dict[str, Any]:
    from digitcls.inference import load_predictor
    from digitcls.inputs import check_folders
    from digitcls.runs import newest_best_checkpoint, writable_folder
    from digitcls.schema import validated

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
    print(f"labelled {len(predictions)} images with {model_path} on {predictor.backend} -> {cfg.output} "
          f"({rate:.0f} images/s)")
    if len(errors):
        print(f"{len(errors)} unreadable image(s) listed in {cfg.errors_output}")
    return {"images": len(predictions), "errors": len(errors), "images_per_s": rate, "model_path": str(model_path),
            "backend": predictor.backend}


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    friendly_errors(predict)(cfg)


if __name__ == "__main__":
    main()
