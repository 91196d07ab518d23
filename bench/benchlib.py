"""Shared pieces of the benchmarks: arguments, data, timing summaries, machine facts, atomic writes.

Every benchmark measures both sides of its ratio in the same process and run, repeats each side
several times (interleaved where the sides are cheap to alternate, so drift in the machine's load
hits both alike) and reports the median together with every repeat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from digitcls import atomic
from digitcls.data.prepare import ensure_prepared
from digitcls.model.backbones import normalization_for

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
MODEL_NAME = "mobilenetv3"
SPLITS = ("train", "val", "test")


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark shares; each script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="prepared image folders <data-dir>/{train,val,test}/<digit>/*.png (default: data)",
    )
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path("data/raw"),
        help="MNIST IDX files used to prepare --data-dir when it is missing (default: data/raw)",
    )
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (tiny counts)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per side (default: per script)")
    parser.add_argument("--output", type=Path, default=None, help="also write the result as JSON here")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)"
    )
    return parser


def apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def quiet_libraries() -> None:
    """Silence Lightning's banner lines and the warnings a benchmark triggers on purpose."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "digitcls"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning.*")


def ensure_data(data_dir: Path, raw_dir: Path) -> Path:
    """``data_dir`` with its three split folders; prepared from ``raw_dir`` (``make data``) if missing."""
    ensure_prepared(data_dir / "train", data_dir / "val", data_dir / "test", raw_dir)
    return data_dir


def repeats(args: argparse.Namespace, full: int, quick: int = 2) -> int:
    if args.repeats is not None:
        return max(1, args.repeats)
    return quick if args.quick else full


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """``{"median": ..., "repeats": [...]}``, rounded for reading."""
    return {
        "median": round(statistics.median(values), digits),
        "repeats": [round(v, digits) for v in values],
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else float("nan")


def normaliser(model_name: str = MODEL_NAME) -> Callable[[Tensor], Tensor]:
    """uint8 batch -> normalised float batch, exactly as ``DigitClassifier.forward`` prepares its input."""
    mean_values, std_values = normalization_for(model_name)
    mean = torch.tensor(mean_values).view(1, -1, 1, 1)
    std = torch.tensor(std_values).view(1, -1, 1, 1)

    def normalise(images: Tensor) -> Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return (images - mean) / std

    return normalise


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    """What a reader needs to judge the figures: the hardware, the threads and the library versions."""
    import cv2
    import lightning
    import torchvision

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "opencv": cv2.__version__,
        "git_commit": _git_commit(),
        "load_average_1_5_15": load_average(),
    }


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old file or the whole new one, never a part."""
    atomic.write_text(path, text)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def finish(name: str, args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """Print a standalone script's result and write it to ``--output`` when given."""
    payload = {"bench": name, "quick": args.quick, "machine": machine_facts(), **result}
    print(json.dumps(payload["metrics"], indent=2))
    for line in result.get("notes", []):
        print(f"note: {line}")
    if args.output is not None:
        write_json(args.output, payload)
        print(f"wrote {args.output}")
    return payload


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
