"""predict_throughput_ratio: labelling the test folder our way over the tutorial's one-image-at-a-time loop.

* our side: ``digitcls.predict.label_folder`` (what ``make predict`` runs after loading the model:
  batches of 256 decoded by ``num_workers`` threads ahead of the model) with the model from
  ``load_predictor(checkpoint)``: onnxruntime when the export extra is installed (the checkpoint's
  cached export), else torch. The same ``label_folder`` on torch (``backend="torch"``) is measured
  beside it, and both sides' pre.csv rows are compared (same labels, confidences within 1e-4).
* the whole command line, ``python -m digitcls.predict model_path=... test_path=...`` (Python
  start-up, imports, model load, pre.csv and the picture), as wall seconds for the test folder, with
  the cached export already made (the steady state: made once per checkpoint, its cost is reported
  apart as ``predict_onnx_export_s``), and what ``import digitcls.predict`` and ``--help`` cost alone.
* tutorial side: for each file ``cv2.imread``, BGR->RGB, ``cv2.resize``, to a float tensor,
  ``model(x[None])`` (batch size 1, eval mode, ``no_grad``), ``argmax``: on an evenly spaced subset
  of the files (``--single-images``), reported as images/s.

All use the same model: a randomly initialised ``DigitClassifier`` (seeded) shaped like the one
``make train`` produces (``conf/experiment/mbv3.yaml``'s model_name, img_size and output_stride), which is
as fast as a trained one, saved as a real checkpoint that our side loads.

    python bench/bench_predict.py [--quick] [--single-images 1000] [--no-cli]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import pandas as pd
import torch
from benchlib import (
    apply_threads,
    base_parser,
    ensure_data,
    finish,
    log,
    quiet_libraries,
    ratio,
    repeats,
    start_quiet,
    summarize,
    timed,
)
from hydra import compose, initialize_config_module

from digitcls.data.folders import unlabelled_samples
from digitcls.inference import load_predictor
from digitcls.model.module import DigitClassifier
from digitcls.predict import label_folder

TARGET = 30.0
# the model `make train` produces (the one `make predict` labels with): the composed recipe, defaults included
with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
    RECIPE = compose(config_name="train", overrides=["+experiment=mbv3"])
CLI_TARGET_S = 6.0
CLI_TIMEOUT_S = 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=RECIPE.img_size, help="default: the mbv3 recipe's")
    parser.add_argument(
        "--output-stride", type=int, default=RECIPE.output_stride, help="default: the mbv3 recipe's"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="our side's batch size (conf/predict.yaml)"
    )
    parser.add_argument(
        "--num-workers", type=int, default=2, help="our side's decoding threads (conf/predict.yaml)"
    )
    parser.add_argument(
        "--single-images", type=int, default=None, help="files for the one-at-a-time side (default 1000)"
    )
    parser.add_argument("--model-name", default=RECIPE.model_name, help="default: the mbv3 recipe's")
    parser.add_argument(
        "--no-cli", action="store_true", help="skip `python -m digitcls.predict` even when it exists"
    )
    return parser.parse_args(argv)


def _model(args: argparse.Namespace) -> DigitClassifier:
    torch.manual_seed(0)
    return DigitClassifier(
        model_name=args.model_name, img_size=(args.img_size, args.img_size), output_stride=args.output_stride
    ).eval()


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


def same_predictions(first: pd.DataFrame, second: pd.DataFrame, tolerance: float = 1e-4) -> bool:
    """The same rows in the same order, the same labels, confidences within ``tolerance``."""
    return (
        first.image_id.tolist() == second.image_id.tolist()
        and first.label.tolist() == second.label.tolist()
        and bool((first.confidence - second.confidence).abs().max() <= tolerance)
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


def wall_s(command: list[str], cwd: Path) -> tuple[float, str | None]:
    """Wall seconds of ``command`` run in ``cwd``: (seconds, None), or (nan, why it failed)."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return float("nan"), f"`{' '.join(command[1:4])}` ran over {CLI_TIMEOUT_S} s"
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return float("nan"), f"`{' '.join(command[1:4])}` exited {done.returncode}: {tail}"
    return elapsed, None


def predict_cli(checkpoint: Path, folder: Path, work_dir: Path) -> tuple[float, str | None]:
    """Wall seconds of the real command line, run in ``work_dir`` (where pre.csv and the picture land)."""
    work_dir.mkdir()
    elapsed, failure = wall_s(
        [
            sys.executable,
            "-m",
            "digitcls.predict",
            f"model_path={checkpoint.resolve()}",
            f"test_path={folder.resolve()}",
            f"hydra.run.dir={work_dir.resolve()}",
        ],
        work_dir,
    )
    if failure is None and not (work_dir / "pre.csv").is_file():
        return float("nan"), "`python -m digitcls.predict` wrote no pre.csv"
    return elapsed, failure


def per_s(fn: Callable[[], int]) -> float:
    count, seconds = timed(fn)
    return count / seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_libraries()
    apply_threads(args)
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    folder = data_dir / "test"
    files = unlabelled_samples(folder)
    n_single = min(len(files), args.single_images or (20 if args.quick else 1000))
    step = len(files) / n_single
    subset = [files[int(i * step)] for i in range(n_single)]  # evenly spaced: every class, every style
    n_repeats = repeats(args, full=3)
    cli_repeats = 0 if args.no_cli else (1 if args.quick else 3)
    model = _model(args)
    notes = ["random-weight model (seeded): inference speed does not depend on the weights"]
    runs: dict[str, list[float]] = {
        "ours": [],
        "torch": [],
        "single": [],
        "cli_s": [],
        "import_s": [],
        "help_s": [],
    }
    with tempfile.TemporaryDirectory(prefix="digitcls-bench-predict-") as tmp:
        checkpoint = write_checkpoint(model, Path(tmp) / "random.ckpt")
        _, first_load_s = timed(lambda: load_predictor(checkpoint))  # onnxruntime when installed: exports first
        ours, cached_load_s = timed(lambda: load_predictor(checkpoint))  # the export is cached now
        on_torch = load_predictor(checkpoint, backend="torch")
        if ours.backend == "torch":
            notes.append("onnxruntime is not installed (the export extra): our side ran on torch")

        def labelled(predictor: Any) -> Any:
            """``make predict``'s labelling of the whole folder (its pre.csv rows)."""
            return label_folder(predictor, folder, "none", args.batch_size, args.num_workers)[0]

        by_ours = labelled(ours)  # warm-up + agreement
        by_torch = labelled(on_torch)
        agree = same_predictions(by_ours, by_torch)
        one_at_a_time(model, subset[:5], args.img_size)  # warm-up
        for index in range(n_repeats):  # interleaved
            runs["ours"].append(per_s(lambda: len(labelled(ours))))
            runs["torch"].append(per_s(lambda: len(labelled(on_torch))))
            runs["single"].append(per_s(lambda: one_at_a_time(model, subset, args.img_size)))
            line = (
                f"ours ({ours.backend}) {runs['ours'][-1]:.0f} img/s, torch {runs['torch'][-1]:.0f} img/s, "
                f"one-at-a-time {runs['single'][-1]:.1f} img/s"
            )
            if index < cli_repeats:
                cli_s, failure = predict_cli(checkpoint, folder, Path(tmp) / f"cli{index}")
                import_s, _ = wall_s([sys.executable, "-c", "import digitcls.predict"], Path(tmp))
                help_s, _ = wall_s([sys.executable, "-m", "digitcls.predict", "--help"], Path(tmp))
                if failure:
                    notes.append(failure)
                    cli_repeats = 0
                else:
                    runs["cli_s"].append(cli_s)
                    runs["import_s"].append(import_s)
                    runs["help_s"].append(help_s)
                    line += f", command line {cli_s:.1f} s (import {import_s:.1f} s, --help {help_s:.1f} s)"
            log(f"predict: repeat {index + 1}/{n_repeats}: {line}")
        export_s = first_load_s - cached_load_s if ours.backend == "onnxruntime" else float("nan")

    ours_summary = summarize(runs["ours"], 1)
    torch_summary = summarize(runs["torch"], 1)
    single = summarize(runs["single"], 2)
    value = ratio(ours_summary["median"], single["median"])
    metrics = {
        "predict_throughput_ratio": value,
        "predict_images_per_s": ours_summary["median"],
        "predict_torch_images_per_s": torch_summary["median"],
        "predict_onnx_vs_torch_speedup": ratio(ours_summary["median"], torch_summary["median"]),
        "predict_one_at_a_time_images_per_s": single["median"],
        "predict_backends_agree": agree,
        "predict_onnx_export_s": round(export_s, 2),
        "predict_cached_model_load_s": round(cached_load_s, 2),
    }
    targets = {"predict_throughput_ratio": {"target": f">= {TARGET:g}", "met": value >= TARGET}}
    cli = None
    if runs["cli_s"]:
        cli = {key: summarize(runs[key], 2) for key in ("cli_s", "import_s", "help_s")}
        cli_s = cli["cli_s"]["median"]
        metrics |= {
            "predict_cli_wall_s": cli_s,
            "predict_cli_images_per_s": round(len(files) / cli_s, 1),
            "predict_cli_throughput_ratio": ratio(len(files) / cli_s, single["median"]),
            "predict_import_s": cli["import_s"]["median"],
            "predict_help_s": cli["help_s"]["median"],
        }
        targets["predict_cli_wall_s"] = {"target": f"<= {CLI_TARGET_S:g}", "met": cli_s <= CLI_TARGET_S}
    return {
        "metrics": metrics,
        "targets": targets,
        "details": {
            "model_name": args.model_name,
            "img_size": args.img_size,
            "weights": "random (seeded)",
            "files": len(files),
            "ours": {
                "what": f"digitcls.predict.label_folder (batch {args.batch_size}, {args.num_workers} decoding "
                f"threads) on load_predictor(checkpoint): {ours.backend}",
                "backend": ours.backend,
                "images_per_s": ours_summary,
            },
            "torch": {
                "what": "the same label_folder on load_predictor(checkpoint, backend='torch')",
                "images_per_s": torch_summary,
            },
            "cli": {
                "what": "python -m digitcls.predict model_path=... test_path=...: wall seconds incl. Python "
                "start-up, imports, model load (cached export), pre.csv and predictions.png; "
                "`python -c 'import digitcls.predict'` and `python -m digitcls.predict --help` alone",
                "seconds": cli,
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
    guard = start_quiet(args)
    return finish("predict", args, run(args), guard)


if __name__ == "__main__":
    main()
