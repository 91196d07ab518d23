"""serve_*: requests/s and latency of `python -m digitcls.serve` under a bounded local load, batching on and off.

For each setting a server is started on a free port of 127.0.0.1 (never another address), ``--requests``
POST /predict requests (generated 28x28 digit PNGs, multipart) are sent from ``--concurrency`` client
threads, and requests/s, p50 and p99 latency and the count of lost requests (no 200 answer) are reported.
The two settings run one after the other on the same model: ``max_batch_size=16 batch_timeout=0.005`` and
``max_batch_size=1``. The model is a seeded, untrained ``mobilenetv3`` at 32 px (as fast as a trained one)
unless ``--model`` names a checkpoint. The client threads share the machine with the server.

    python bench/bench_serve.py [--requests 2000] [--concurrency 16] [--model path.ckpt] [--output results.json]
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import requests
import torch
from benchlib import REPO_ROOT, base_parser, finish, log, start_quiet, timed

from digitcls.model.module import DigitClassifier
from digitcls.serve.health import wait_until_healthy

HOST = "127.0.0.1"  # the load goes to this machine only
SETTINGS = {"batching": ["max_batch_size=16", "batch_timeout=0.005"], "no_batching": ["max_batch_size=1"]}
START_TIMEOUT_S = 300


def digit_pngs(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for n in range(count):
        image = np.zeros((28, 28), np.uint8)
        cv2.putText(
            image, str(n % 10), (7 + int(rng.integers(-2, 3)), 21), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2
        )
        images.append(cv2.imencode(".png", image)[1].tobytes())
    return images


def seeded_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = DigitClassifier(
        model_name="mobilenetv3", class_names=[str(d) for d in range(10)], img_size=(32, 32)
    )
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(model: Path, overrides: list[str], log_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "digitcls.serve",
        f"model_path={model}",
        f"host={HOST}",
        f"port={port}",
        "log_level=warning",
        *overrides,
    ]
    with log_file.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://{HOST}:{port}"
    try:
        wait_until_healthy(url, process, log_file, START_TIMEOUT_S)
    except RuntimeError as error:
        if process.poll() is None:  # timed out, still running
            stop_server(process)
        raise SystemExit(str(error)) from None
    return process, url


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def load(url: str, images: list[bytes], total: int, concurrency: int) -> dict[str, Any]:
    """``total`` requests from ``concurrency`` threads, each with its own keep-alive session."""
    sessions = [requests.Session() for _ in range(concurrency)]

    def one(index: int) -> tuple[float, bool]:
        session = sessions[index % concurrency]
        started = time.perf_counter()
        try:
            response = session.post(
                f"{url}/predict", files={"image": ("digit.png", images[index % len(images)])}, timeout=60
            )
            ok = response.status_code == 200 and "label" in response.json()
        except requests.RequestException:
            ok = False
        return time.perf_counter() - started, ok

    for warm in range(concurrency):  # first requests pay for lazy set-up
        one(warm)
    with ThreadPoolExecutor(concurrency) as pool:
        results, elapsed = timed(lambda: list(pool.map(one, range(total))))
    latencies_ms = sorted(1000 * latency for latency, _ in results)
    answered = sum(ok for _, ok in results)
    return {
        "requests": total,
        "concurrency": concurrency,
        "answered": answered,
        "lost": total - answered,
        "requests_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p99_ms": round(latencies_ms[min(len(latencies_ms) - 1, int(0.99 * len(latencies_ms)))], 1),
        "wall_s": round(elapsed, 2),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per setting (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--model", type=Path, default=None, help="a .ckpt/.onnx (default: seeded untrained)")
    args = parser.parse_args()
    guard = start_quiet(args)
    # stopped by `timeout` or kill: run the finally blocks, which stop the server started last
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.requests, args.concurrency = 40, 4
    images = digit_pngs(100)
    metrics: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or seeded_checkpoint(Path(tmp) / "mobilenetv3_seeded.ckpt")
        for name, overrides in SETTINGS.items():
            log(f"{name}: starting the server ({' '.join(overrides)})")
            process, url = start_server(model, overrides, Path(tmp) / f"{name}.log")
            try:
                log(f"{name}: {args.requests} requests, {args.concurrency} concurrent, to {url}")
                metrics[name] = {"server": overrides, **load(url, images, args.requests, args.concurrency)}
                log(f"{name}: {metrics[name]}")  # shown at once: a long run's first half is not lost
            finally:
                stop_server(process)
    metrics["batching_speedup"] = round(
        metrics["batching"]["requests_per_s"] / metrics["no_batching"]["requests_per_s"], 2
    )
    finish("serve", args, {"metrics": metrics}, guard)


if __name__ == "__main__":
    main()
