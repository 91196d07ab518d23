"""Shared pieces of the benchmarks: arguments, data, timing summaries, machine facts, the quiet guard,
atomic writes.

Every benchmark measures only on a quiet machine (``QuietGuard``: it refuses to start above a 1-minute
load average of ``BUSY_PER_CORE`` per core, and marks its results ``busy`` when overridden or when other
processes took CPU meanwhile; ``bench/readme_tables.py`` never publishes a busy result). Every benchmark
measures both sides of its ratio in the same process and run, repeats each side
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
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

from digitcls import atomic
from digitcls.data.prepare import ensure_prepared

T = TypeVar("T")

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
    add_busy_ok(parser)
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


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """(``fn(*args, **kwargs)``, the wall seconds it took): the one stopwatch of every bench script."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else float("nan")


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


# --- the quiet guard --------------------------------------------------------------------------------------------

# One bar for both checks: the 1-minute load average before the run, and the CPU other processes used during it,
# per core. Above it other processes hold the cores and every figure comes out low and noisy.
BUSY_PER_CORE = 0.3
BUSY_OK_ENV = "DIGITCLS_BENCH_BUSY_OK"
PROC_STAT = Path("/proc/stat")


def add_busy_ok(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--busy-ok",
        action="store_true",
        help=f"measure even on a busy machine (or set {BUSY_OK_ENV}=1); the results are marked busy "
        "and bench/readme_tables.py will not publish them",
    )


def core_count() -> int:
    return os.cpu_count() or 1


def machine_busy_cpu_s() -> float:
    """CPU seconds every process on the machine has used since boot, from the ``cpu`` line of /proc/stat."""
    fields = [int(value) for value in PROC_STAT.read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_tree_cpu_s() -> float:
    """CPU seconds used by this process and its descendants: live ones, and ended ones already waited for."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # ended between the listing and the reading: its parent counts it
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class QuietGuard:
    """Refuses to measure on a busy machine; afterwards says whether the run stayed quiet.

    ``QuietGuard(busy_ok)`` reads the 1-minute load average and raises ``SystemExit`` (saying how to override)
    when it is above ``BUSY_PER_CORE`` per core. ``record()`` adds how much CPU other processes used since then:
    the machine's busy CPU time (/proc/stat) minus this process tree's. The run is ``busy`` when overridden
    (``--busy-ok``, ``DIGITCLS_BENCH_BUSY_OK=1``, or a ``--quick`` smoke run) or when others took more than
    ``BUSY_PER_CORE`` of the cores on average.
    """

    def __init__(self, busy_ok: bool = False, why_ok: str = "--busy-ok") -> None:
        self.cores = core_count()
        self.load_before = load_average()
        load_limit = BUSY_PER_CORE * self.cores
        self.overridden = None
        if self.load_before is not None and self.load_before[0] > load_limit:
            if not busy_ok:
                raise SystemExit(
                    f"the machine is busy: 1-minute load average {self.load_before[0]:.2f} on {self.cores} cores "
                    f"is above {BUSY_PER_CORE} per core ({load_limit:.2f}), so figures measured now would be low "
                    f"and noisy. Wait until it is quiet, or pass --busy-ok (or set {BUSY_OK_ENV}=1) to measure "
                    "anyway: the results are then marked busy and bench/readme_tables.py will not publish them."
                )
            self.overridden = why_ok
            log(
                f"measuring on a busy machine (load {self.load_before[0]:.2f} on {self.cores} cores): {why_ok}"
            )
        self.started = time.monotonic()
        self.machine_cpu_before = machine_busy_cpu_s()
        self.own_cpu_before = own_tree_cpu_s()

    def record(self) -> dict[str, Any]:
        wall_s = time.monotonic() - self.started
        machine_cpu_s = machine_busy_cpu_s() - self.machine_cpu_before
        others_cpu_s = max(0.0, machine_cpu_s - (own_tree_cpu_s() - self.own_cpu_before))
        others_per_core = others_cpu_s / max(wall_s, 1e-9) / self.cores
        why_busy = []
        if self.overridden:
            why_busy.append(
                f"started at load {self.load_before[0]:.2f} on {self.cores} cores ({self.overridden})"
            )
        if others_per_core > BUSY_PER_CORE:
            why_busy.append(
                f"other processes used {others_cpu_s:.0f} CPU-s during the {wall_s:.0f} s run "
                f"({others_per_core:.2f} per core)"
            )
        return {
            "busy": bool(why_busy),
            "why_busy": why_busy,
            "cores": self.cores,
            "busy_per_core": BUSY_PER_CORE,
            "load_average_before": self.load_before,
            "wall_s": round(wall_s, 1),
            "other_processes_cpu_s": round(others_cpu_s, 1),
            "other_processes_per_core": round(others_per_core, 3),
        }


def start_quiet(args: argparse.Namespace) -> QuietGuard:
    """The guard for a script's whole run, from its parsed ``args`` (``--busy-ok``, ``--quick``) and the env."""
    if getattr(args, "busy_ok", False):
        why = "--busy-ok"
    elif os.environ.get(BUSY_OK_ENV, "") not in ("", "0"):
        why = f"{BUSY_OK_ENV}={os.environ[BUSY_OK_ENV]}"
    elif getattr(args, "quick", False):
        why = "--quick smoke run"
    else:
        return QuietGuard()
    return QuietGuard(busy_ok=True, why_ok=why)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old file or the whole new one, never a part."""
    atomic.write_text(path, text)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def finish(name: str, args: argparse.Namespace, result: dict[str, Any], guard: QuietGuard) -> dict[str, Any]:
    """Print a standalone script's result, with ``guard``'s verdict, and write it to ``--output`` when given."""
    quiet = guard.record()
    payload = {
        "bench": name,
        "quick": args.quick,
        "busy": quiet["busy"],
        "quiet": quiet,
        "machine": machine_facts(),
        **result,
    }
    if quiet["busy"]:
        log(f"these results are marked busy: {'; '.join(quiet['why_busy'])}")
    print(json.dumps(payload["metrics"], indent=2))
    for line in result.get("notes", []):
        print(f"note: {line}")
    if args.output is not None:
        write_json(args.output, payload)
        print(f"wrote {args.output}")
    return payload


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def matmul_gflops(size: int, repeats: int = 20) -> float:
    """The median GFLOP/s of an n x n fp32 matmul: the peak the training loop is measured against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        times.append(timed(lambda: a @ b)[1])
    return 2 * size**3 / sorted(times)[len(times) // 2] / 1e9


def training_flops_per_image(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Training FLOPs per image: 3 x the forward pass counted by ``FlopCounterMode`` (backward = 2 x forward,
    the usual convention). The counter's own backward figure is not used: for depthwise convolutions it
    counts the weight gradient as a dense convolution (65x the forward of a 64-channel 3x3 depthwise layer
    in torch 2.14), which would credit MobileNetV3 with work it never does."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    return 3 * counter.get_total_flops() / len(images)
