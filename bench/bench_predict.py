"""predict_throughput_ratio: labelling the test folder our way over the tutorial's one-image-at-a-time loop.

* our side: the real ``python -m digitcls.predict model_path=... test_path=...`` (what ``make predict``
  runs), timed end to end from the command line, Python start-up and model loading included, when
  that module exists; until then (or if it fails) the in-process equivalent: ``DigitDataModule``'s
  predict loader (worker processes decode, batches of 256) + the model under ``inference_mode``,
  DataModule setup and worker start-up included in every repeat. The in-process figure is always
  reported too.
* tutorial side: for each file ``cv2.imread``, BGR->RGB, ``cv2.resize``, to a float tensor,
  ``model(x[None])`` (batch size 1, eval mode, ``no_grad``), ``argmax``: on an evenly spaced subset
  of the files (``--single-images``), reported as images/s.

Both sides use the same model: a randomly initialised ``DigitClassifier`` (seeded), which is as fast
as a trained one; the command-line side loads it from a checkpoint written for the purpose.

    python bench/bench_predict.py [--quick] [--single-images 1000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from benchlib import (
    MODEL_NAME,
    REPO_ROOT,
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
from digitcls.model.module import DigitClassifier

TARGET = 10.0
CLI_TIMEOUT_S = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256, help="our in-process side's batch size")
    parser.add_argument("--num-workers", type=int, default=2, help="our in-process side's loader workers")
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


def batched_in_process(args: argparse.Namespace, model: DigitClassifier, folder: Path) -> tuple[int, float]:
    """One predict pass as the DataModule serves it: setup, loader (workers), batches, softmax."""
    started = time.perf_counter()
    datamodule = DigitDataModule(
        train_path=None,
        val_path=None,
        test_path=folder,
        img_size=args.img_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        class_names=model.class_names,
    )
    datamodule.setup("predict")
    labelled = 0
    with torch.inference_mode():
        for batch in datamodule.predict_dataloader():
            images, paths = datamodule.on_before_batch_transfer(batch, 0)
            if len(images):
                model(images).softmax(dim=1).argmax(dim=1)
            labelled += len(paths)
    return labelled, time.perf_counter() - started


def one_at_a_time(model: DigitClassifier, files: list[Path], img_size: int) -> tuple[int, float]:
    """The tutorial's loop: a file, a resize, a batch of one."""
    started = time.perf_counter()
    with torch.no_grad():
        for path in files:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            image = cv2.resize(image, (img_size, img_size))
            tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
            model(tensor[None]).argmax(dim=1).item()
    return len(files), time.perf_counter() - started


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


def predict_cli_available() -> bool:
    return importlib.util.find_spec("digitcls.predict") is not None


def predict_cli(checkpoint: Path, folder: Path, work_dir: Path) -> tuple[float, str | None]:
    """Wall time of the real command line on ``folder``; (seconds, None) or (nan, why it failed)."""
    command = [
        sys.executable,
        "-m",
        "digitcls.predict",
        f"model_path={checkpoint.resolve()}",
        f"test_path={folder.resolve()}",
        f"hydra.run.dir={work_dir.resolve()}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=work_dir, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return float("nan"), f"`{' '.join(command[1:])}` ran over {CLI_TIMEOUT_S} s"
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return float("nan"), f"`python -m digitcls.predict` exited {done.returncode}: {' | '.join(tail)}"
    return elapsed, None


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_libraries()
    apply_threads(args)
    args.model_name = args.model_name or ("mobilenetv3_small" if args.quick else MODEL_NAME)
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    folder = data_dir / "test"
    files = unlabelled_samples(folder)
    n_single = min(len(files), args.single_images or (20 if args.quick else 1000))
    step = len(files) / n_single
    subset = [files[int(i * step)] for i in range(n_single)]  # evenly spaced: every class, every digit style
    n_repeats = repeats(args, full=3)
    model = _model(args)
    notes = ["random-weight model (seeded): inference speed does not depend on the weights"]

    use_cli = predict_cli_available() and not args.no_cli
    if not use_cli and not args.no_cli:
        notes.append(
            "digitcls.predict does not exist yet: our side is the in-process DigitDataModule predict "
            "loader + model (batch 256, inference_mode); rerun once predict.py lands"
        )
    batched_runs: list[float] = []
    single_runs: list[float] = []
    cli_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="digitcls-bench-predict-") as tmp:
        checkpoint = write_checkpoint(model, Path(tmp) / "random.ckpt") if use_cli else None
        one_at_a_time(model, subset[: min(5, len(subset))], args.img_size)  # warm-up
        for index in range(n_repeats):  # interleaved
            seen, elapsed = batched_in_process(args, model, folder)
            batched_runs.append(seen / elapsed)
            seen, elapsed = one_at_a_time(model, subset, args.img_size)
            single_runs.append(seen / elapsed)
            if use_cli and checkpoint is not None and index < (1 if args.quick else 2):
                work_dir = Path(tmp) / f"cli{index}"
                work_dir.mkdir()
                elapsed, failure = predict_cli(checkpoint, folder, work_dir)
                if failure:
                    notes.append(failure + "; our side falls back to the in-process figure")
                    use_cli = False
                else:
                    cli_runs.append(len(files) / elapsed)
            log(
                f"predict: repeat {index + 1}/{n_repeats}: batched {batched_runs[-1]:.0f} img/s, "
                f"one-at-a-time {single_runs[-1]:.1f} img/s"
                + (f", CLI {cli_runs[-1]:.0f} img/s" if cli_runs and len(cli_runs) == index + 1 else "")
            )

    batched = summarize(batched_runs, 1)
    single = summarize(single_runs, 2)
    cli = summarize(cli_runs, 1) if cli_runs else None
    ours = cli["median"] if cli else batched["median"]
    source = (
        "python -m digitcls.predict (end to end: start-up, model load, all files, pre.csv)"
        if cli
        else "in-process DigitDataModule predict loader + model, batches of 256, inference_mode"
    )
    value = ratio(ours, single["median"])
    return {
        "metrics": {
            "predict_throughput_ratio": value,
            "predict_images_per_s": ours,
            "predict_batched_in_process_images_per_s": batched["median"],
            "predict_one_at_a_time_images_per_s": single["median"],
        },
        "targets": {"predict_throughput_ratio": {"target": f">= {TARGET:g}", "met": value >= TARGET}},
        "details": {
            "model_name": args.model_name,
            "img_size": args.img_size,
            "weights": "random (seeded)",
            "files": len(files),
            "ours": {"what": source, "images_per_s": cli or batched},
            "batched_in_process": {
                "what": f"DigitDataModule predict loader (batch {args.batch_size}, num_workers "
                f"{args.num_workers}) + model under inference_mode; setup and worker start-up in every repeat",
                "images_per_s": batched,
            },
            "cli": {"what": "python -m digitcls.predict, wall time incl. start-up", "images_per_s": cli},
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
