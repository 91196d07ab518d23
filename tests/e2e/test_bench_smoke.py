"""`make bench` plumbing on tiny generated folders: every benchmark runs in --quick mode and writes
its figures. The keys exist and are positive numbers, and each headline ratio is ours / baseline from the
same payload and each target's `met` follows from it; the figures themselves depend on the hardware and
are judged by reading a full `make bench` run, not here.

The benchmarks run in child processes (one thread each): they change torch's thread count, logging
levels and warning filters, which must not leak into the rest of the test session.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import TINY_TRAIN, run_ok

BENCH = Path(__file__).resolve().parents[2] / "bench"

METRIC_KEYS = {
    "data": (
        "data_throughput_ratio",
        "data_inmemory_images_per_s",
        "data_perfile_images_per_s",
        "data_cache_build_s",
    ),
    "lightning": (
        "lightning_overhead_ratio",
        "lightning_ms_per_step",
        "plain_ms_per_step",
        "lightning_share_of_matmul",
        "lightning_gflops",
        "matmul_gflops",
    ),
    "predict": (
        "predict_throughput_ratio",
        "predict_images_per_s",
        "predict_one_at_a_time_images_per_s",
    ),
    "train": (
        "train_images_per_s",
        "train_channels_last_speedup",
        "train_bf16_mixed_speedup",
        "train_inmemory_vs_per_file_speedup",
    ),
}
MACHINE_KEYS = ("date", "cpu_count", "torch", "torch_threads", "lightning", "load_average_1_5_15")


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=BENCH.parent,
        env={
            **os.environ,
            "DIGITCLS_BENCH_BUSY_OK": "1",
        },  # smoke runs, not figures: the test machine is busy
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def _positive_numbers(metrics: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
        values = metrics[key].values() if isinstance(metrics[key], dict) else [metrics[key]]
        assert values, key
        for value in values:
            assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
            assert math.isfinite(value) and value > 0, (key, value)


# headline ratio: (ours, baseline), both in the same payload's metrics
RATIOS = {
    "data_throughput_ratio": ("data_inmemory_images_per_s", "data_perfile_images_per_s"),
    "lightning_overhead_ratio": ("lightning_ms_per_step", "plain_ms_per_step"),
    "lightning_share_of_matmul": ("lightning_gflops", "matmul_gflops"),
    "predict_throughput_ratio": ("predict_images_per_s", "predict_one_at_a_time_images_per_s"),
}


def _ratios_add_up(metrics: dict[str, Any], targets: dict[str, Any]) -> None:
    """Each ratio present is ours / baseline (to the rounding of the written figures: 0.5 %), and its
    target's `met` is the comparison its target states."""
    for key, (ours, baseline) in RATIOS.items():
        if key not in metrics:
            continue
        assert metrics[key] == pytest.approx(metrics[ours] / metrics[baseline], rel=5e-3, abs=2e-3), key
        if key in targets:
            comparison, written = targets[key]["target"].split()
            bound = float(written.removesuffix("%")) / 100 if written.endswith("%") else float(written)
            expected = metrics[key] >= bound if comparison == ">=" else metrics[key] <= bound
            assert comparison in (">=", "<=") and targets[key]["met"] == expected, (key, targets[key])


def test_run_all_quick_writes_json_and_markdown(tiny_folders: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    _run(
        [
            str(BENCH / "run_all.py"),
            "--quick",
            "--threads", "1",
            "--no-cli",
            "--data-dir", str(tiny_folders),
            "--raw-dir", str(tmp_path / "no-raw-needed"),
            "--results-dir", str(results),
        ]
    )  # fmt: skip
    assert not (results / "latest.json").exists(), "--quick must never overwrite the real figures"
    result = json.loads((results / "quick.json").read_text())
    assert result["quick"] is True
    for keys in METRIC_KEYS.values():
        _positive_numbers(result["metrics"], keys)
    assert set(result["targets"]) == {
        "data_throughput_ratio",
        "lightning_overhead_ratio",
        "lightning_share_of_matmul",
        "predict_throughput_ratio",
    }
    _ratios_add_up(result["metrics"], result["targets"])
    for key in MACHINE_KEYS:
        assert result["machine"][key] is not None, key
    assert result["machine"]["torch_threads"] == 1
    for side in ("per_file", "in_memory"):
        repeats = result["details"]["data"][side]["images_per_s"]["repeats"]
        assert len(repeats) >= 2 and all(r > 0 for r in repeats)
    table = (results / "quick.md").read_text()
    assert "| ratio | ours | baseline | ratio | target | met |" in table
    for row in ("data throughput", "training step", "prediction", "Training throughput"):
        assert row in table, row
    assert not list(results.glob("*.tmp")), "atomic writes leave no temporary files"


def test_each_script_runs_alone_with_output(tiny_folders: Path, tmp_path: Path) -> None:
    """Each script's own entry point (``main``: parse, run, print, --output), in one child process."""
    snippet = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import bench_data, bench_lightning, bench_predict, bench_train\n"
        "for name, module in [('data', bench_data), ('lightning', bench_lightning),\n"
        "                     ('predict', bench_predict), ('train', bench_train)]:\n"
        "    module.main(['--quick', '--threads', '1', '--repeats', '1', '--data-dir', sys.argv[2],\n"
        "                 '--output', f'{sys.argv[3]}/{name}.json'] + (['--no-cli'] if name == 'predict' else []))\n"
    )
    _run(["-c", snippet, str(BENCH), str(tiny_folders), str(tmp_path)])
    for name, keys in METRIC_KEYS.items():
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["bench"] == name and payload["quick"] is True
        _positive_numbers(payload["metrics"], keys)
        _ratios_add_up(payload["metrics"], payload.get("targets", {}))
        assert payload["machine"]["cpu_count"] >= 1


def test_tta_bench_chooses_on_val_and_reproduces_the_runs_test_accuracy(
    tiny_folders: Path, tmp_path: Path
) -> None:
    """A real tiny training run, then bench_tta on its folder: the bench itself stops unless its no-view test
    accuracy equals the run's summary.json (a second path to the same number)."""
    splits = [f"{split}_path={tiny_folders / split}" for split in ("train", "val", "test")]
    run_ok("digitcls.train", [*TINY_TRAIN, *splits, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    _run([str(BENCH / "bench_tta.py"), "--data-dir", str(tiny_folders), str(tmp_path / "run"),
          "--output", str(tmp_path / "tta.json")])  # fmt: skip
    result = json.loads((tmp_path / "tta.json").read_text())
    metrics, val = result["metrics"], result["metrics"]["val_acc_mean"]
    assert metrics["chosen_on_val"] in val and val[metrics["chosen_on_val"]] == max(val.values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert metrics["test_acc_without"]["mean"] == round(summary["test_acc"], 5)


def test_tta_shift_moves_the_image_and_fills_with_background() -> None:
    sys.path.insert(0, str(BENCH))
    from bench_tta import shifted

    image = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    assert shifted(image, 1, 0)[0, 0].tolist() == [[0, 1, 2], [0, 4, 5], [0, 7, 8]]  # one pixel right
    assert shifted(image, 0, -1)[0, 0].tolist() == [[4, 5, 6], [7, 8, 9], [0, 0, 0]]  # one pixel up
    assert torch.equal(shifted(image, 0, 0), image)
