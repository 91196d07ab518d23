"""predict_throughput_ratio: labelling the test folder our way over the tutorial's one-image-at-a-time loop.

* our side: ``digitcls.predict.label_folder`` (what ``make predict`` runs after loading the model:
  ``PredictFolderDataset`` + DataLoader workers decoding, batches of 256, ``inference_mode``) with the
  model loaded by ``load_predictor`` from a checkpoint, loader start-up included in every repeat.
  The whole command line, ``python -m digitcls.predict model_path=... test_path=...`` (Python
  start-up, imports, checkpoint load, pre.csv and the picture), is timed too and reported beside it.
  Should ``label_folder`` be missing, the DataModule's predict loader + the model stands in.
* tutorial side: for each file ``cv2.imread``, BGR->RGB, ``cv2.resize``, to a float tensor,
  ``model(x[None])`` (batch size 1, eval mode, ``no_grad``), ``argmax``: on an evenly spaced subset
  of the files (``--single-images``), reported as images/s.

Both sides use the same model: a randomly initialised ``DigitClassifier`` (seeded), which is as fast
as a trained one, saved as a real checkpoint that our side loads.

    python bench/bench_predict.py [--quick] [--single-images 1000] [--no-cli]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from benchlib import (
    MODEL_NAME,
    apply_threads,
    base_parser,
    ensure_data,
    finish,
    log,
    quiet_libraries,
    ratio,
    repeats,
    summarize,
)

from digitcls.data.datamodule import DigitDataModule
from digitcls.data.folders import unlabelled_samples
from digitcls.model.module import DigitClassifier, load_classifier

TARGET = 10.0
CLI_TIMEOUT_S = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument(
        "--batch-size", type=int, default=256, help="our side's batch size (conf/predict.yaml)"
    )
    parser.add_argument(
        "--num-workers", type=int, default=2, help="our side's loader workers (conf/predict.yaml)"
    )
    parser.add_argument(
        "--single-images", type=int, default=None, help="files for the one-at-a-time side (default 1000)"
    )
    parser.add_argument(
        "--model-name", default=None, help=f"default {MODEL_NAME} (--quick: mobilenetv3_small)"
    )
    parser.add_argument(
        "--no-cli", action="store_true", help="skip `python -m digitcls.predict` even when it exists"
    )
    return parser.parse_args(argv)


def _model(args: argparse.Namespace) -> DigitClassifier:
    torch.manual_seed(0)
    return DigitClassifier(model_name=args.model_name, img_size=args.img_size).eval()


def write_checkpoint(model: DigitClassifier, path: Path) -> Path:
    """A real digitcls checkpoint (hyperparameters + state dict) of the random-weight model."""
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


def ours_function(args: argparse.Namespace, checkpoint: Path) -> tuple[str, Callable[[Path], int]]:
    """(what it is, a function labelling a folder and returning how many images it labelled)."""
    try:
        from digitcls.inference import load_predictor
        from digitcls.predict import label_folder
    except ImportError:
        model = load_classifier(checkpoint)

        def datamodule_pass(folder: Path) -> int:
            datamodule = DigitDataModule(
                None, None, folder, args.img_size, batch_size=args.batch_size,
                num_workers=args.num_workers, class_names=model.class_names,
            )  # fmt: skip
            datamodule.setup("predict")
            labelled = 0
            with torch.inference_mode():
                for batch in datamodule.predict_dataloader():
                    images, paths = datamodule.on_before_batch_transfer(batch, 0)
                    if len(images):
                        model(images).softmax(dim=1).argmax(dim=1)
                    labelled += len(paths)
            return labelled

        return (
            "DigitDataModule predict loader + model, inference_mode (digitcls.predict.label_folder missing)",
            datamodule_pass,
        )

    predictor = load_predictor(checkpoint)

    def label_folder_pass(folder: Path) -> int:
        predictions, _errors = label_folder(predictor, folder, "none", args.batch_size, args.num_workers)
        return len(predictions)

    return (
        f"digitcls.predict.label_folder (batch {args.batch_size}, num_workers {args.num_workers}), "
        "model from load_predictor(checkpoint); DataLoader start-up in every repeat",
        label_folder_pass,
    )


def one_at_a_time(model: DigitClassifier, files: list[Path], img_size: int) -> int:
    """The tutorial's loop: a file, a resize, a batch of one."""
    with torch.no_grad():
        for path in files:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            image = cv2.resize(image, (img_size, img_size))
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
            model(tensor[None]).argmax(dim=1).item()
    return len(files)


def predict_cli(checkpoint: Path, folder: Path, work_dir: Path) -> tuple[float, str | None]:
    """Wall time of the real command line, run in ``work_dir`` (where pre.csv and the picture land);
    (seconds, None), or (nan, why it failed)."""
    command = [
        sys.executable,
        "-m",
        "digitcls.predict",
        f"model_path={checkpoint.resolve()}",
        f"test_path={folder.resolve()}",
        f"hydra.run.dir={work_dir.resolve()}",
    ]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=work_dir, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return float("nan"), f"`python -m digitcls.predict` ran over {CLI_TIMEOUT_S} s"
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or not (work_dir / "pre.csv").is_file():
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return float(
            "nan"
        ), f"`python -m digitcls.predict` exited {done.returncode} (pre.csv missing?): {tail}"
    return elapsed, None


def timed(fn: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = fn()
    return count / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_libraries()
    apply_threads(args)
    args.model_name = args.model_name or ("mobilenetv3_small" if args.quick else MODEL_NAME)
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    folder = data_dir / "test"
    files = unlabelled_samples(folder)
    n_single = min(len(files), args.single_images or (20 if args.quick else 1000))
    step = len(files) / n_single
    subset = [files[int(i * step)] for i in range(n_single)]  # evenly spaced: every class, every style
    n_repeats = repeats(args, full=3)
    cli_repeats = (
        0 if args.no_cli or importlib.util.find_spec("digitcls.predict") is None else (1 if args.quick else 2)
    )
    model = _model(args)
    notes = ["random-weight model (seeded): inference speed does not depend on the weights"]

    ours_runs: list[float] = []
    single_runs: list[float] = []
    cli_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="digitcls-bench-predict-") as tmp:
        checkpoint = write_checkpoint(model, Path(tmp) / "random.ckpt")
        ours_what, ours = ours_function(args, checkpoint)
        one_at_a_time(model, subset[:5], args.img_size)  # warm-up
        for index in range(n_repeats):  # interleaved
            ours_runs.append(timed(lambda: ours(folder)))
            single_runs.append(timed(lambda: one_at_a_time(model, subset, args.img_size)))
            line = f"ours {ours_runs[-1]:.0f} img/s, one-at-a-time {single_runs[-1]:.1f} img/s"
            if index < cli_repeats:
                work_dir = Path(tmp) / f"cli{index}"
                work_dir.mkdir()
                elapsed, failure = predict_cli(checkpoint, folder, work_dir)
                if failure:
                    notes.append(failure)
                    cli_repeats = 0
                else:
                    cli_runs.append(len(files) / elapsed)
                    line += f", command line {cli_runs[-1]:.0f} img/s"
            log(f"predict: repeat {index + 1}/{n_repeats}: {line}")

    ours_summary = summarize(ours_runs, 1)
    single = summarize(single_runs, 2)
    cli = summarize(cli_runs, 1) if cli_runs else None
    value = ratio(ours_summary["median"], single["median"])
    metrics = {
        "predict_throughput_ratio": value,
        "predict_images_per_s": ours_summary["median"],
        "predict_one_at_a_time_images_per_s": single["median"],
    }
    if cli:
        metrics["predict_cli_images_per_s"] = cli["median"]
        metrics["predict_cli_throughput_ratio"] = ratio(cli["median"], single["median"])
    return {
        "metrics": metrics,
        "targets": {"predict_throughput_ratio": {"target": f">= {TARGET:g}", "met": value >= TARGET}},
        "details": {
            "model_name": args.model_name,
            "img_size": args.img_size,
            "weights": "random (seeded)",
            "files": len(files),
            "ours": {"what": ours_what, "images_per_s": ours_summary},
            "cli": {
                "what": "python -m digitcls.predict model_path=... test_path=...: wall time incl. Python "
                "start-up, imports, checkpoint load, pre.csv and predictions.png",
                "images_per_s": cli,
            },
            "one_at_a_time": {
                "what": "cv2.imread -> BGR2RGB -> cv2.resize -> float tensor -> model(x[None]), eval + no_grad",
                "files": n_single,
                "images_per_s": single,
            },
            "repeats": n_repeats,
        },
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    return finish("predict", args, run(args))


if __name__ == "__main__":
    main()
