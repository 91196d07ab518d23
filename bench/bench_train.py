"""train_images_per_s: training throughput on this machine, for the record.

MobileNetV3 large and small at 32 and 64 px, batch 128, fp32, fed by the in-memory path
(``cache.load_split`` -> ``TensorSplit`` batches, normalised in the model's forward), AdamW and the
label-smoothing loss, in a plain loop (``bench_lightning.py`` measures what Lightning adds on top).
At 32 px with the large model it also compares channels_last against the default memory format, bf16
autocast (Lightning's ``bf16-mixed`` on CPU) against fp32, and
``torch.compile`` against eager; the compiled run happens in a child process that gives up when
compiling takes longer than ``--compile-limit`` seconds (reported as skipped, with the reason).
All configurations are kept in memory and timed in turn within each repeat, so load drift hits all.

How close to the hardware: the same run times an fp32 matmul (``--matmul-size``, the CPU's practical peak
through the same BLAS/oneDNN build), counts each configuration's training FLOPs per image (3 x the forward
FLOPs of ``torch.utils.flop_counter.FlopCounterMode``) and prints the training GFLOP/s achieved and its
share of that peak; batch sizes 64 and 256 of the first configuration show whether batch size moves it.

    python bench/bench_train.py [--quick] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    apply_threads,
    base_parser,
    ensure_data,
    finish,
    log,
    matmul_gflops,
    quiet_libraries,
    repeats,
    start_quiet,
    summarize,
    timed,
    training_flops_per_image,
)
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from digitcls.data.cache import TensorSplit, load_split
from digitcls.data.datamodule import DigitDataModule, ImageFolderDataset
from digitcls.data.folders import discover_classes, labelled_samples
from digitcls.model.module import DigitClassifier
from digitcls.model.optim import build_optimizer

LABEL_SMOOTH = 0.1
FULL_CONFIGS = (
    ("mobilenetv3", 32),
    ("mobilenetv3_small", 32),
    ("mobilenetv3", 64),
    ("mobilenetv3_small", 64),
)
QUICK_CONFIGS = (("mobilenetv3_small", 32),)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (--quick: 8)")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per repeat (default 6, --quick 1)"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    parser.add_argument("--compile-limit", type=float, default=120.0, help="give up compiling after this (s)")
    parser.add_argument("--compile-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--matmul-size", type=int, default=1024, help="n of the n x n fp32 matmul peak")
    return parser.parse_args(argv)


def in_memory_batches(data_dir: Path, img_size: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches of the val split, served the way ``data_cache=true`` serves them."""
    root = data_dir / "val"
    samples = labelled_samples(root, discover_classes(data_dir / "train"), "val")
    images, labels = load_split(ImageFolderDataset(samples, (img_size, img_size)), cache_dir=data_dir / ".cache")
    split = TensorSplit(images, labels)
    sampler = BatchSampler(
        RandomSampler(split, generator=torch.Generator().manual_seed(0)), batch_size, drop_last=True
    )
    loader = DataLoader(split, sampler=sampler, batch_size=None, num_workers=0)
    while True:
        yield from loader


def per_file_batches(data_dir: Path, img_size: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless training batches from the per-file path (``data_cache=false``, 2 workers), which compete
    with the training process for the same cores: what the in-memory path buys end to end."""
    datamodule = DigitDataModule(
        data_dir / "train",
        data_dir / "val",
        data_dir / "test",
        (img_size, img_size),
        batch_size=batch_size,
        num_workers=2,
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    while True:
        yield from loader


class Trainee:
    """One configuration's model, optimizer and batch stream; ``steps(n)`` returns images/s.

    ``channels_last=None`` keeps the module's own default memory format."""

    def __init__(
        self,
        model_name: str,
        img_size: int,
        batches: Iterator[tuple[Tensor, Tensor]],
        channels_last: bool | None = None,
        compile_model: bool = False,
        bf16: bool = False,
    ) -> None:
        torch.manual_seed(0)
        options: dict[str, Any] = {} if channels_last is None else {"channels_last": channels_last}
        self.model = DigitClassifier(
            model_name=model_name, img_size=(img_size, img_size), label_smooth=LABEL_SMOOTH, **options
        ).train()
        self.channels_last = bool(self.model.hparams.get("channels_last", False))
        self.forward = torch.compile(self.model) if compile_model else self.model
        self.optimizer = build_optimizer("AdamW", self.model.parameters(), lr=2e-3, weight_decay=1e-4)
        self.batches = batches
        # what Lightning's precision="bf16-mixed" does on CPU: the forward pass under bfloat16 autocast
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def steps(self, count: int) -> float:
        images_seen = 0
        started = time.perf_counter()
        for _ in range(count):
            images, labels = next(self.batches)
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast:
                loss = self.model.criterion(self.forward(images), labels)
            loss.backward()
            self.optimizer.step()
            images_seen += len(labels)
        return images_seen / (time.perf_counter() - started)


def compile_worker(args: argparse.Namespace, batch_size: int, steps: int, n_repeats: int) -> None:
    """Child process: compile the large model at 32 px, then time eager and compiled in turn."""
    out: dict[str, Any] = {}
    batches = in_memory_batches(args.data_dir, 32, batch_size)
    eager = Trainee("mobilenetv3", 32, batches)
    compiled = Trainee("mobilenetv3", 32, batches, compile_model=True)
    out["compile_s"] = round(timed(lambda: compiled.steps(1))[1], 1)  # compiles forward and backward
    if out["compile_s"] > args.compile_limit:
        out["skipped"] = f"compiling took {out['compile_s']} s (> {args.compile_limit:g} s)"
    else:
        eager.steps(2)
        compiled.steps(2)
        runs: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(n_repeats):
            runs["eager"].append(eager.steps(steps))
            runs["compiled"].append(compiled.steps(steps))
        out.update({name: summarize(values, 1) for name, values in runs.items()})
    args.compile_worker.write_text(json.dumps(out))


def run_compile(args: argparse.Namespace, batch_size: int, steps: int, n_repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="digitcls-bench-compile-") as tmp:
        result_path = Path(tmp) / "compile.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--data-dir", str(args.data_dir),
            "--raw-dir", str(args.raw_dir),
            "--batch-size", str(batch_size),
            "--steps", str(steps),
            "--repeats", str(n_repeats),
            "--compile-limit", str(args.compile_limit),
            "--compile-worker", str(result_path),
        ]  # fmt: skip
        hard_limit = args.compile_limit + 30 + 2 * n_repeats * steps * 5  # imports + the timed steps
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=hard_limit, check=False)
        except subprocess.TimeoutExpired:
            return {
                "skipped": f"compile + timing ran over {hard_limit:.0f} s (compile limit {args.compile_limit:g} s)"
            }
        if done.returncode != 0 or not result_path.is_file():
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            return {"skipped": f"torch.compile failed on this machine (exit {done.returncode}): {tail}"}
        return json.loads(result_path.read_text())


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_libraries()
    apply_threads(args)
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    batch_size = args.batch_size or (8 if args.quick else 128)
    steps = args.steps or (1 if args.quick else 6)
    n_repeats = repeats(args, full=3)
    if args.compile_worker is not None:
        compile_worker(args, batch_size, steps, n_repeats)
        return {}

    configs = QUICK_CONFIGS if args.quick else FULL_CONFIGS
    streams = {size: in_memory_batches(data_dir, size, batch_size) for size in {size for _, size in configs}}
    trainees = {f"{name}@{size}": Trainee(name, size, streams[size]) for name, size in configs}
    first_name, first_size = configs[0]
    base_key = f"{first_name}@{first_size}"
    default_cl = trainees[base_key].channels_last  # the module's default memory format
    other_key = f"{base_key}+{'contiguous' if default_cl else 'channels_last'}"
    trainees[other_key] = Trainee(first_name, first_size, streams[first_size], channels_last=not default_cl)
    trainees[f"{base_key}+bf16_mixed"] = Trainee(first_name, first_size, streams[first_size], bf16=True)
    for other_batch in (64, 256) if not args.quick else ():
        other_stream = in_memory_batches(data_dir, first_size, other_batch)
        trainees[f"{base_key}+batch{other_batch}"] = Trainee(first_name, first_size, other_stream)
    trainees[f"{first_name}@{first_size}+per_file_loader"] = Trainee(
        first_name, first_size, per_file_batches(data_dir, first_size, batch_size)
    )
    flops_per_image = {
        key: training_flops_per_image(trainee.model, next(trainee.batches)[0]) for key, trainee in trainees.items()
    }
    peak = matmul_gflops(args.matmul_size)
    for trainee in trainees.values():
        trainee.steps(1 if args.quick else 2)  # warm-up: first-touch allocations, oneDNN primitives
    runs: dict[str, list[float]] = {key: [] for key in trainees}
    for index in range(n_repeats):
        for key, trainee in trainees.items():
            runs[key].append(trainee.steps(steps))
        log(
            f"train: repeat {index + 1}/{n_repeats}: "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in runs.items())
        )
    del trainees, streams  # stops the per-file loader's workers

    measured = {key: summarize(values, 1) for key, values in runs.items()}
    cl_key, plain_key = (base_key, other_key) if default_cl else (other_key, base_key)
    notes: list[str] = []
    if args.quick or args.no_compile:
        compiled: dict[str, Any] = {"skipped": "--quick" if args.quick else "--no-compile"}
    else:
        log(f"train: torch.compile of {base_key} in a child process (limit {args.compile_limit:g} s)")
        compiled = run_compile(args, batch_size, steps, n_repeats)
    if "skipped" in compiled:
        notes.append(f"torch.compile skipped: {compiled['skipped']}")

    per_file_key = f"{base_key}+per_file_loader"
    metrics: dict[str, Any] = {
        "train_images_per_s": {key: value["median"] for key, value in measured.items() if "+" not in key},
        "train_channels_last_speedup": round(measured[cl_key]["median"] / measured[plain_key]["median"], 3),
        "train_bf16_mixed_speedup": round(
            measured[f"{base_key}+bf16_mixed"]["median"] / measured[base_key]["median"], 3
        ),
        "train_inmemory_vs_per_file_speedup": round(
            measured[base_key]["median"] / measured[per_file_key]["median"], 3
        ),
    }
    achieved = {
        key: round(flops_per_image[key] * value["median"] / 1e9, 2) for key, value in measured.items()
    }
    metrics["matmul_peak_gflops"] = round(peak, 1)
    metrics["train_gflops"] = achieved
    metrics["train_share_of_matmul_peak"] = {key: round(value / peak, 3) for key, value in achieved.items()}
    for key, value in achieved.items():
        log(f"train: {key}: {value:.1f} GFLOP/s = {value / peak:.1%} of the {peak:.0f} GFLOP/s matmul peak")
    if "compiled" in compiled:
        metrics["train_compile_speedup"] = round(
            compiled["compiled"]["median"] / compiled["eager"]["median"], 3
        )
    faster = (
        "channels_last" if metrics["train_channels_last_speedup"] > 1 else "the default (contiguous) format"
    )
    return {
        "metrics": metrics,
        "targets": {},
        "details": {
            "batch_size": batch_size,
            "training_mflops_per_image": {
                key: round(value / 1e6, 2) for key, value in flops_per_image.items()
            },
            "timed_steps_per_repeat": steps,
            "repeats": n_repeats,
            "precision": "fp32",
            "data": "in-memory path (TensorSplit batches of the val split), normalised in forward",
            "loop": "plain PyTorch: zero_grad, forward, CrossEntropyLoss(label_smoothing=0.1), backward, AdamW step",
            "images_per_s": measured,
            "channels_last": f"channels_last vs contiguous ({first_name}@{first_size}): {faster} is faster; "
            f"the module's default is {'channels_last' if default_cl else 'contiguous'}",
            "per_file_loader": f"{per_file_key}: the same training fed by the per-file DataLoader "
            "(2 worker processes on the same cores) instead of the in-memory path",
            "torch_compile": compiled,
        },
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.compile_worker is not None:  # a child of the measuring run, which guards it
        return run(args)
    guard = start_quiet(args)
    return finish("train", args, run(args), guard)


if __name__ == "__main__":
    main()
