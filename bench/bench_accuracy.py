"""`make bench-accuracy`: train each recipe on full MNIST from scratch and record its test accuracy.

For each recipe, runs exactly what a user types,

    python -m digitcls.train +experiment=<recipe> hydra.run.dir=outputs/bench-accuracy/<recipe>

then reads the run's ``summary.json`` (test accuracy of the best checkpoint, epochs, wall time) into
``bench/results/accuracy.json`` beside the machine's facts and the recipe's target. ``--collect`` skips
training and records runs already in ``outputs/bench-accuracy/`` (e.g. after ``make bench-accuracy`` was
interrupted between recipes).

    python bench/bench_accuracy.py [--recipes mbv3_fast,mbv3] [--collect] [-- extra overrides]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchlib import REPO_ROOT, RESULTS_DIR, log, machine_facts, write_json

RUNS_DIR = Path("outputs/bench-accuracy")
# (minimum test accuracy, maximum wall time in seconds) on a 2-core laptop-class CPU
TARGETS = {"mbv3_fast": (0.990, 10 * 60), "mbv3": (0.995, 45 * 60)}


def train_command(recipe: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "digitcls.train", f"+experiment={recipe}",
        f"hydra.run.dir={RUNS_DIR / recipe}", *extra,
    ]  # fmt: skip


def record(recipe: str, extra: list[str]) -> dict[str, Any]:
    summary_file = REPO_ROOT / RUNS_DIR / recipe / "summary.json"
    if not summary_file.is_file():
        raise SystemExit(f"no {summary_file}: run `make bench-accuracy` (or drop --collect)")
    summary = json.loads(summary_file.read_text())
    hparams_file = summary_file.parent / "hparams.yaml"  # the model's hyper-parameters, as trained
    min_acc, max_s = TARGETS.get(recipe, (None, None))
    test_acc, wall = summary.get("test_acc"), summary.get("wall_time_s")
    return {
        "command": " ".join(["python", *train_command(recipe, extra)[1:]]),
        "test_acc": test_acc,
        "best_val_acc": summary.get("best_val_acc"),
        "best_epoch": summary.get("best_epoch"),
        "epochs_run": summary.get("epochs_run"),
        "wall_time_s": wall,
        "target_test_acc": min_acc,
        "target_wall_time_s": max_s,
        "meets_target": None if min_acc is None or test_acc is None or wall is None
        else bool(test_acc >= min_acc and wall <= max_s),
        "hparams": hparams_file.read_text() if hparams_file.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="mbv3_fast,mbv3", help="comma-separated experiment names")
    parser.add_argument("--collect", action="store_true", help="record existing runs, train nothing")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "accuracy.json")
    parser.add_argument("overrides", nargs="*", help="extra train overrides, e.g. trainer.accelerator=cpu")
    args = parser.parse_args(argv)

    # recipes not run this time keep their last record
    results: dict[str, Any] = json.loads(args.output.read_text())["recipes"] if args.output.is_file() else {}
    for recipe in args.recipes.split(","):
        if not args.collect:
            log(f"accuracy: training {recipe} on full MNIST")
            subprocess.run(train_command(recipe, args.overrides), cwd=REPO_ROOT, check=True)
        results[recipe] = record(recipe, args.overrides)
        line = results[recipe]
        log(f"accuracy: {recipe}: test acc {line['test_acc']:.4%} after {line['epochs_run']} epochs in "
            f"{line['wall_time_s'] / 60:.1f} min (target met: {line['meets_target']})")
    write_json(args.output, {"bench": "accuracy", "machine": machine_facts(), "recipes": results})
    log(f"wrote {args.output}")
    return 0 if all(r["meets_target"] is not False for r in results.values()) else 1  # every recorded recipe


if __name__ == "__main__":
    sys.exit(main())
