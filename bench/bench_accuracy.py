"""`make bench-accuracy`: train each recipe on full MNIST from scratch over several seeds; record test accuracy.

For each recipe and seed, runs exactly what a user types,

    python -m digitcls.train +experiment=<recipe> random_seed=<seed> hydra.run.dir=outputs/bench-<stem>/<recipe>-s<seed>

then reads the run's ``summary.json`` (test accuracy of the best-val checkpoint, epochs, wall time) into
``bench/results/accuracy.json``: per-seed lines, then mean, min and sd per recipe, beside the machine's facts
(CPU model, commit), the quiet guard's verdict (``benchlib.QuietGuard``) and the recipe's target. The test set
only scores the checkpoint val chose. ``<stem>`` is ``--output``'s file name (``accuracy``, ``ema``, ...), so a
run with extra overrides into another results file never overwrites the plain runs. ``--collect`` trains nothing
and records runs already in ``outputs/bench-<stem>/``; their load was not watched, so they are marked busy.

    python bench/bench_accuracy.py [--recipes mbv3_quick,mbv3] [--seeds 1,2,3] [--collect] [--output F] [-- overrides]

The README's accuracy table is generated from ``accuracy.json`` by ``bench/readme_tables.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchlib import REPO_ROOT, RESULTS_DIR, add_busy_ok, log, machine_facts, start_quiet, timed, write_json

# (minimum mean test accuracy over the seeds, maximum wall time per run in seconds, start-up included) on 2 CPU cores
TARGETS = {"mbv3_quick": (0.990, 45), "mbv3": (0.997, 30 * 60)}
TARGETS["mbv3_small"] = TARGETS["mbv3"]


def meets_target(recipe: str, mean_acc: float, slowest_s: float) -> bool | None:
    """Whether a recipe's record meets today's target (None: the recipe has none). The README's table asks
    this of every record, so a record measured under an older target is judged by the current one."""
    min_acc, max_s = TARGETS.get(recipe, (None, None))
    return None if min_acc is None else bool(mean_acc >= min_acc and slowest_s <= max_s)


def runs_dir(output: Path) -> Path:
    """Where the runs behind ``output`` train: one folder per results file."""
    return Path("outputs") / f"bench-{output.stem}"


def train_command(recipe: str, seed: int, extra: list[str], runs: Path) -> list[str]:
    return [
        sys.executable, "-m", "digitcls.train", f"+experiment={recipe}", f"random_seed={seed}",
        f"hydra.run.dir={runs / f'{recipe}-s{seed}'}", "trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip


def seed_line(
    recipe: str, seed: int, extra: list[str], command_s: float | None, runs: Path
) -> dict[str, Any]:
    summary_file = REPO_ROOT / runs / f"{recipe}-s{seed}" / "summary.json"
    if not summary_file.is_file():
        raise SystemExit(f"no {summary_file}: run `make bench-accuracy` (or drop --collect)")
    summary = json.loads(summary_file.read_text())
    return {
        "seed": seed,
        "command": " ".join(["python", *train_command(recipe, seed, extra, runs)[1:]]),
        **{
            key: summary.get(key)
            for key in ("test_acc", "best_val_acc", "best_epoch", "epochs_run", "wall_time_s")
        },
        # the whole command, Python start-up and imports included (None when --collect found the run)
        "command_wall_s": None if command_s is None else round(command_s, 1),
    }


def recipe_record(recipe: str, lines: list[dict[str, Any]], runs: Path) -> dict[str, Any]:
    accs = [line["test_acc"] for line in lines]
    walls = [line["command_wall_s"] or line["wall_time_s"] for line in lines]
    min_acc, max_s = TARGETS.get(recipe, (None, None))
    mean = statistics.fmean(accs)
    hparams = REPO_ROOT / runs / f"{recipe}-s{lines[0]['seed']}" / "hparams.yaml"
    return {
        "seeds": lines,
        "test_acc_mean": round(mean, 5),
        "test_acc_min": min(accs),
        "test_acc_sd": round(statistics.stdev(accs), 5) if len(accs) > 1 else None,
        "val_acc_mean": round(statistics.fmean(line["best_val_acc"] for line in lines), 5),
        "wall_time_s_max": max(walls),
        "wall_time_s_median": statistics.median(walls),
        "target_test_acc_mean": min_acc,
        "target_wall_time_s": max_s,
        "meets_target": meets_target(recipe, mean, max(walls)),
        "hparams": hparams.read_text() if hparams.is_file() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="mbv3_quick,mbv3", help="comma-separated experiment names")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated random_seed values")
    parser.add_argument("--collect", action="store_true", help="record existing runs, train nothing")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "accuracy.json")
    parser.add_argument("overrides", nargs="*", help="extra train overrides, e.g. trainer.accelerator=cpu")
    add_busy_ok(parser)
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = runs_dir(args.output)
    guard = start_quiet(args)

    # recipes not run this time keep their last record
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results: dict[str, Any] = previous.get("recipes", {})
    for record in results.values():  # records from before per-recipe machine facts keep the file's
        record.setdefault("machine", previous.get("machine"))
    for recipe in args.recipes.split(","):
        lines = []
        for seed in seeds:
            command_s = None
            if not args.collect:
                log(f"accuracy: training {recipe} (seed {seed}) on full MNIST")
                command = train_command(recipe, seed, args.overrides, runs)
                _, command_s = timed(subprocess.run, command, cwd=REPO_ROOT, check=True)
            lines.append(seed_line(recipe, seed, args.overrides, command_s, runs))
            log(
                f"accuracy: {recipe} seed {seed}: test acc {lines[-1]['test_acc']:.4%} "
                f"in {lines[-1]['wall_time_s']:.0f} s"
            )
        quiet = guard.record()
        if args.collect:
            quiet["busy"] = True
            quiet["why_busy"].append("--collect: the runs' load was not watched")
        results[recipe] = {**recipe_record(recipe, lines, runs), "machine": machine_facts(), "quiet": quiet}
        record = results[recipe]
        log(
            f"accuracy: {recipe}: mean {record['test_acc_mean']:.4%}, min {record['test_acc_min']:.4%} over "
            f"seeds {seeds}; slowest run {record['wall_time_s_max']:.0f} s (target met: {record['meets_target']})"
        )
    write_json(args.output, {"bench": "accuracy", "recipes": results})
    log(f"wrote {args.output}")
    return 0 if all(r["meets_target"] is not False for r in results.values()) else 1  # every recorded recipe


if __name__ == "__main__":
    sys.exit(main())
