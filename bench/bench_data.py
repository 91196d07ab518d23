"""data_throughput_ratio: the in-memory path over the per-file OpenCV path, in normalised batches per second.

Both sides produce what the model consumes: a float batch, scaled to [0, 1] and normalised exactly as
``DigitClassifier.forward`` does, from the training split at the same ``img_size`` and batch size.

* per-file side: ``DigitDataModule(data_cache=False)``'s train loader (``ImageFolderDataset``: read,
  decode, resize per file in ``num_workers`` worker processes, collate), then normalise.
* in-memory side: the DataModule's own train loader when it serves ``data_cache=true`` from a
  ``TensorSplit``; until then the same pieces it will use (``cache.load_split`` -> ``TensorSplit``,
  batches sliced by ``BatchSampler`` index lists, ``batch_size=None``), then normalise.

The one-off decode of the split into the cache is timed on its own (cold, into a fresh folder) and
reported apart from the steady-state rate, as is reading the finished cache back from disk.

    python bench/bench_data.py [--quick] [--data-dir data]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
    start_quiet,
    summarize,
    timed,
)
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from digitcls.data.cache import TensorSplit, load_split
from digitcls.data.datamodule import DigitDataModule, ImageFolderDataset
from digitcls.data.folders import discover_classes, labelled_samples
from digitcls.model.module import DigitClassifier

TARGET = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (--quick: 32)")
    parser.add_argument("--num-workers", type=int, default=2, help="per-file side's DataLoader workers")
    parser.add_argument(
        "--folder-batches", type=int, default=None, help="timed batches per per-file repeat (default 60)"
    )
    return parser.parse_args(argv)


def _datamodule(
    data_dir: Path, img_size: int, batch_size: int, num_workers: int, cache: bool
) -> DigitDataModule:
    return DigitDataModule(
        train_path=data_dir / "train",
        val_path=data_dir / "val",
        test_path=data_dir / "test",
        img_size=(img_size, img_size),
        batch_size=batch_size,
        num_workers=num_workers,
        data_cache=cache,
    )


def _time_batches(
    batches: Iterator[Any], normalise: Callable[[Tensor], Tensor], warmup: int, count: int | None
) -> tuple[int, float]:
    """Skip ``warmup`` batches (worker start-up, first touches), then time ``count`` (None: the rest)."""
    for _ in range(warmup):
        next(batches)
    images_seen = 0
    started = time.perf_counter()
    for index, (images, _labels) in enumerate(batches):
        normalise(images)
        images_seen += len(images)
        if count is not None and index + 1 >= count:
            break
    return images_seen, time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet_libraries()
    apply_threads(args)
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    batch_size = args.batch_size or (32 if args.quick else 128)
    folder_batches = args.folder_batches or (4 if args.quick else 60)
    warmup = 1 if args.quick else 3
    n_repeats = repeats(args, full=3)
    normalise = DigitClassifier(model_name=MODEL_NAME).normalise  # the model's own input preparation
    notes: list[str] = []

    samples = labelled_samples(data_dir / "train", discover_classes(data_dir / "train"), "train")
    folder_split = ImageFolderDataset(samples, (args.img_size, args.img_size))
    log(f"data: cold cache build of {len(samples)} training images at {args.img_size} px")
    with tempfile.TemporaryDirectory(prefix="digitcls-bench-cache-") as cache_dir:
        _, build_s = timed(lambda: load_split(folder_split, Path(cache_dir)))
        (images, labels), reload_s = timed(lambda: load_split(folder_split, Path(cache_dir)))

    folder_dm = _datamodule(data_dir, args.img_size, batch_size, args.num_workers, cache=False)
    folder_dm.setup("fit")
    folder_loader = folder_dm.train_dataloader()

    cache_dm = _datamodule(data_dir, args.img_size, batch_size, args.num_workers, cache=True)
    _, cache_setup_s = timed(lambda: cache_dm.setup("fit"))
    if isinstance(cache_dm.train_dataset, TensorSplit):
        cache_source = "DigitDataModule(data_cache=True).train_dataloader()"
        cache_loader = cache_dm.train_dataloader()
    else:
        cache_source = (
            "TensorSplit + BatchSampler(RandomSampler, batch_size) with batch_size=None, num_workers=0"
        )
        notes.append(
            "DigitDataModule(data_cache=True) does not serve a TensorSplit yet: the in-memory side uses "
            "data/cache.py's load_split + TensorSplit with BatchSampler batches, as the DataModule will."
        )
        split = TensorSplit(images, labels)
        sampler = BatchSampler(
            RandomSampler(split, generator=torch.Generator().manual_seed(0)), batch_size, drop_last=False
        )
        cache_loader = DataLoader(split, sampler=sampler, batch_size=None, num_workers=0)

    timed_batches = max(1, min(folder_batches, len(folder_loader) - warmup))
    folder_runs: list[float] = []
    cache_runs: list[float] = []
    for index in range(n_repeats):  # interleaved: per-file, in-memory, per-file, ...
        seen, elapsed = _time_batches(iter(folder_loader), normalise, warmup, timed_batches)
        folder_runs.append(seen / elapsed)
        seen, elapsed = _time_batches(iter(cache_loader), normalise, warmup, None)
        cache_runs.append(seen / elapsed)
        log(
            f"data: repeat {index + 1}/{n_repeats}: per-file {folder_runs[-1]:.0f} img/s, in-memory {cache_runs[-1]:.0f} img/s"
        )
    del folder_loader, cache_loader  # stop the persistent workers

    folder = summarize(folder_runs, 1)
    cache = summarize(cache_runs, 1)
    value = ratio(cache["median"], folder["median"])
    return {
        "metrics": {
            "data_throughput_ratio": value,
            "data_inmemory_images_per_s": cache["median"],
            "data_perfile_images_per_s": folder["median"],
            "data_cache_build_s": round(build_s, 4),
        },
        "targets": {"data_throughput_ratio": {"target": f">= {TARGET:g}", "met": value >= TARGET}},
        "details": {
            "img_size": args.img_size,
            "batch_size": batch_size,
            "train_images": len(samples),
            "per_file": {
                "what": f"DigitDataModule(data_cache=False) train loader, num_workers={args.num_workers}, "
                "decode+resize per file, collate, then normalise",
                "images_per_s": folder,
                "warmup_batches": warmup,
                "timed_batches_per_repeat": timed_batches,
            },
            "in_memory": {
                "what": cache_source + ", then normalise (uint8 -> float / 255, (x - mean) / std)",
                "images_per_s": cache,
                "timed": "a whole epoch per repeat",
            },
            "cache_build": {
                "cold_build_s": round(build_s, 3),
                "cold_build_images_per_s": round(len(samples) / build_s, 1),
                "reload_from_disk_s": round(reload_s, 3),
                "datamodule_setup_s": round(cache_setup_s, 3),
                "what": "load_split into a fresh folder (decode every file with a thread pool, torch.save), "
                "then load_split again (reads the .pt); not part of the steady-state figure",
            },
            "repeats": n_repeats,
        },
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    guard = start_quiet(args)
    return finish("data", args, run(args), guard)


if __name__ == "__main__":
    main()
