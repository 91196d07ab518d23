"""The README's benchmark tables, generated from the result files in ``bench/results/`` (never typed by hand).

Each table sits in README.md between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``.

    python bench/readme_tables.py           # rewrite every table in README.md from the result files
    python bench/readme_tables.py --check   # exit 1, naming the tables that differ (tests/unit runs this)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from bench_accuracy import TARGETS
from bench_tta import VIEW_NOTES
from benchlib import REPO_ROOT, RESULTS_DIR, write_atomic

from digitcls.data.transforms import parse_img_size

README = REPO_ROOT / "README.md"
MET = {True: "yes", False: "no", None: "—"}


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS_DIR / f"{name}.json").read_text())


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def percent(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f} %"


def where(result: dict[str, Any]) -> str:
    machine = result["machine"]
    return f"{machine['cpu_model']}, {machine['date'][:10]}"


def target(result: dict[str, Any], key: str, unit: str = "") -> list[str]:
    """The target a bench recorded for ``key`` and whether it was met: the two last cells of a row."""
    goal = result["targets"][key]
    return [goal["target"].replace(">=", "≥").replace("<=", "≤") + unit, MET[goal["met"]]]


# --- make bench's ratios --------------------------------------------------------------------------------------


def ratios_table() -> str:
    latest, predict = load("latest"), load("predict")
    run, pm = latest["metrics"], predict["metrics"]

    rows = [
        [
            "`data_throughput_ratio`: img/s, batches of 128 at 32 px, normalised",
            f"in-memory cache: {number(run['data_inmemory_images_per_s'])}",
            f"per-file OpenCV DataLoader, 2 workers: {number(run['data_perfile_images_per_s'])}",
            f"**{run['data_throughput_ratio']:.1f}×**",
            *target(latest, "data_throughput_ratio"),
            where(latest),
        ],
        [
            "`lightning_overhead_ratio`: ms per training step (mobilenetv3, 32 px, batch 128, fp32)",
            f"LightningModule + Trainer: {run['lightning_ms_per_step']:.1f}",
            f"plain PyTorch loop: {run['plain_ms_per_step']:.1f}",
            f"**{run['lightning_overhead_ratio']:.3f}**",
            *target(latest, "lightning_overhead_ratio"),
            where(latest),
        ],
        [
            "`predict_throughput_ratio`: img/s on the 10,000 test PNGs",
            f"`make predict`'s labelling on ONNX Runtime: {number(pm['predict_images_per_s'])}",
            f"one image at a time, like the tutorial: {pm['predict_one_at_a_time_images_per_s']:.1f}",
            f"**{pm['predict_throughput_ratio']:.1f}×**",
            *target(predict, "predict_throughput_ratio"),
            where(predict),
        ],
    ]
    return table(["ratio", "ours", "baseline", "ratio", "target", "met", "measured on (2 cores)"], rows)


def predict_table() -> str:
    predict = load("predict")
    pm = predict["metrics"]
    rows = [
        [
            "labelling on ONNX Runtime (`make predict`'s default)",
            f"{number(pm['predict_images_per_s'])} img/s",
            "",
            "",
        ],
        [
            "labelling on torch",
            f"{number(pm['predict_torch_images_per_s'])} img/s (ONNX Runtime {pm['predict_onnx_vs_torch_speedup']:.2f}× faster;"
            f" same labels: {MET[pm['predict_backends_agree']]})",
            "",
            "",
        ],
        ["one image at a time", f"{pm['predict_one_at_a_time_images_per_s']:.1f} img/s", "", ""],
        [
            "`predict_throughput_ratio`",
            f"**{pm['predict_throughput_ratio']:.1f}×**",
            *target(predict, "predict_throughput_ratio", "×"),
        ],
        [
            "the whole command, 10,000 PNGs (export cached)",
            f"**{pm['predict_cli_wall_s']:.1f} s**",
            *target(predict, "predict_cli_wall_s", " s"),
        ],
        ["`import digitcls.predict`", f"{pm['predict_import_s']:.2f} s", "", ""],
        ["`python -m digitcls.predict --help`", f"{pm['predict_help_s']:.1f} s", "", ""],
        ["exporting a checkpoint (once)", f"{pm['predict_onnx_export_s']:.1f} s", "", ""],
        ["loading the cached export", f"{pm['predict_cached_model_load_s']:.2f} s", "", ""],
    ]
    details = predict["details"]
    header = f"measure ({details['model_name']} at {details['img_size']} px; {where(predict)})"
    return table([header, "figure", "target", "met"], rows)


# --- training speed --------------------------------------------------------------------------------------------

VARIANTS = {
    "contiguous": "NCHW (contiguous) instead of channels_last",
    "bf16_mixed": "bf16 autocast",
    "batch64": "batch 64",
    "batch256": "batch 256",
    "per_file_loader": "fed by the per-file DataLoader (2 workers)",
}


def train_table() -> str:
    result = load("train")
    metrics, batch = result["metrics"], result["details"]["batch_size"]
    gflops, share = metrics["train_gflops"], metrics["train_share_of_matmul_peak"]
    rows = []
    for key in gflops:
        model, _, variant = key.partition("+")
        name, size = model.split("@")
        images_per_s = result["details"]["images_per_s"][key]["median"]
        what = VARIANTS.get(variant, variant) if variant else f"channels_last, batch {batch} (the defaults)"
        rows.append(
            [name, f"{size} px", what, number(images_per_s, 1), f"{gflops[key]:.1f}", percent(share[key], 1)]
        )
    header = [
        "model",
        "input",
        "setting",
        "img/s",
        "GFLOP/s",
        f"share of {metrics['matmul_peak_gflops']:.0f} GFLOP/s fp32 matmul",
    ]
    return (
        table(header, rows)
        + f"\n\nMeasured on {where(result)}, {result['details']['precision']}, batch {batch}."
    )


# --- accuracy ---------------------------------------------------------------------------------------------------


def accuracy_row(recipe: str, record: dict[str, Any]) -> list[Any]:
    """What the recipe trains and what it scored, from its record in accuracy.json."""
    hp = yaml.safe_load(record["hparams"])
    height, width = parse_img_size(hp["img_size"])
    size = f"{height} px" if height == width else f"{height}x{width} px"
    # records from before output_stride existed trained torchvision's stride 32
    model = f"{hp['model_name']}, {size}, output stride {hp.get('output_stride', 32)}"
    schedule = f"{hp['optimizer']} {hp['learning_rate']:g}, {hp['scheduler']}"
    if "seeds" not in record:  # a single run recorded before the seeds loop existed
        seed = record["command"].partition("random_seed=")[2].split(" ")[0] or "42"
        accuracy = f"{record['test_acc']:.2%} (seed {seed} only)"
        wall = f"{record['wall_time_s'] / 60:.1f} min"
    else:
        seeds = ", ".join(str(line["seed"]) for line in record["seeds"])
        accuracy = (
            f"**{record['test_acc_mean']:.2%}** over seeds {seeds} "
            f"(min {record['test_acc_min']:.2%}, sd {100 * (record['test_acc_sd'] or 0):.2f} points)"
        )
        wall = f"{record['wall_time_s_median'] / 60:.1f} min (max {record['wall_time_s_max'] / 60:.1f})"
    min_acc, max_s = TARGETS.get(recipe, (None, None))
    target = f"mean ≥ {min_acc:.2%} in ≤ {max_s / 60:g} min" if min_acc else "—"
    met = MET[record["meets_target"]] if "seeds" in record else "not measured"
    cpu = (record.get("machine") or {}).get("cpu_model", "?")
    return [f"`+experiment={recipe}`", model, schedule, hp["epochs"], accuracy, wall, cpu, target, met]


def accuracy_table() -> str:
    recipes = load("accuracy")["recipes"]
    order = [recipe for recipe in ("mbv3_fast", "mbv3", "mbv3_small") if recipe in recipes]
    order += sorted(set(recipes) - set(order))
    header = [
        "recipe", "model, input", "optimizer, schedule", "epochs", "test accuracy", "wall time per run",
        "CPU (2 cores)", "target", "met",
    ]  # fmt: skip
    return table(header, [accuracy_row(recipe, recipes[recipe]) for recipe in order])


def shapes_table() -> str:
    rows = sorted(load("shapes")["metrics"]["rows"], key=lambda row: -row["val_acc"])
    best = rows[0]["val_acc"]
    return table(
        [
            "model",
            "input",
            "output stride",
            "step cost (large, 28 px, stride 32 = 1)",
            "training images",
            "val acc",
        ],
        [
            [
                "large" if row["model"] == "mobilenetv3" else "small",
                f"{row['img_size']} px",
                row["output_stride"],
                f"{row['step_cost_vs_reference']:.2f}",
                number(row["train_images"]),
                f"**{percent(row['val_acc'])}**" if row["val_acc"] == best else percent(row["val_acc"]),
            ]
            for row in rows
        ],
    )


def tta_table() -> str:
    result = load("tta")
    metrics, details = result["metrics"], result["details"]
    chosen = metrics["chosen_on_val"]
    rows = []
    for views, shifts in details["view_sets"].items():
        test = {"none": metrics["test_acc_without"], chosen: metrics["test_acc_with_chosen"]}.get(views)
        rows.append(
            [
                f"**{views}** (chosen)" if views == chosen else views,
                VIEW_NOTES.get(views, ""),
                len(shifts),
                percent(metrics["val_acc_mean"][views], 3),
                f"{percent(test['mean'], 3)} (min {percent(test['min'])})" if test else "not scored",
            ]
        )
    runs = len(details["val"])
    return table(
        [
            "views",
            "what is labelled",
            "forward passes",
            f"val acc, mean of {runs} runs",
            "test acc, mean (min)",
        ],
        rows,
    )


def ema_table() -> str:
    """mbv3_small's seeds without and with ``ema_decay`` (``ema.json``: the same bench, one override added)."""
    without = load("accuracy")["recipes"]["mbv3_small"]
    with_ema = load("ema")["recipes"]["mbv3_small"]
    rows = []
    for plain, ema in zip(without["seeds"], with_ema["seeds"], strict=True):
        assert plain["seed"] == ema["seed"], (plain["seed"], ema["seed"])
        rows.append(
            [
                plain["seed"],
                *(percent(line[key]) for line in (plain, ema) for key in ("best_val_acc", "test_acc")),
            ]
        )
    rows.append(
        [
            "**mean**",
            *(
                f"**{percent(record[key])}**"
                for record in (without, with_ema)
                for key in ("val_acc_mean", "test_acc_mean")
            ),
        ]
    )
    decay = with_ema["seeds"][0]["command"].partition("ema_decay=")[2].split(" ")[0]
    return table(
        ["seed", "val, no EMA", "test, no EMA", f"val, ema_decay={decay}", f"test, ema_decay={decay}"], rows
    )


def short_runs_table() -> str:
    result = load("short_runs")
    batches = result["batches"]
    rows = [
        [
            f"{number(row['items'])} x {row['epochs']}",
            f"{percent(row['val running'], 1)} / {percent(row['test running'], 1)} ({percent(row['top class running'], 1)})",
            f"**{percent(row[f'val precise {batches}'], 1)} / {percent(row[f'test precise {batches}'], 1)}** "
            f"({percent(row[f'top class precise {batches}'], 1)})",
            percent(row["val all"], 1),
            percent(row["val all+aug"], 1),
        ]
        for row in result["rows"]
    ]
    header = [
        "images x epochs", "val / test, running statistics (top class)",
        f"val / test, precise BN {batches} (top class)", "val, all training batches", "val, all batches augmented",
    ]  # fmt: skip
    return table(header, rows)


def serve_table() -> str:
    metrics = load("serve")["metrics"]
    rows = [
        [
            " ".join(f"`{option}`" for option in metrics[setting]["server"]) + note,
            f"**{metrics[setting]['requests_per_s']:.1f}**"
            if setting == "batching"
            else metrics[setting]["requests_per_s"],
            f"{metrics[setting]['p50_ms']:.0f} ms",
            f"{metrics[setting]['p99_ms']:.0f} ms",
            f"{number(metrics[setting]['answered'])} / {metrics[setting]['lost']}",
        ]
        for setting, note in (("batching", " (default)"), ("no_batching", " (no batching)"))
    ]
    return table(["setting", "requests/s", "p50", "p99", "answered / lost"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "ratios": ratios_table,
    "predict": predict_table,
    "train": train_table,
    "accuracy": accuracy_table,
    "shapes": shapes_table,
    "tta": tta_table,
    "ema": ema_table,
    "short_runs": short_runs_table,
    "serve": serve_table,
}


def block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- table:{name} -->\n).*?(\n<!-- /table:{name} -->)", re.DOTALL)


def readme_table(readme: str, name: str) -> str | None:
    found = block(name).search(readme)
    return found.group(0).split("\n", 1)[1].rsplit("\n", 1)[0].strip("\n") if found else None


def stale_tables(readme: str) -> list[str]:
    return [name for name, make in TABLES.items() if readme_table(readme, name) != make()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report tables that differ from the results"
    )
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    missing = [name for name in TABLES if readme_table(readme, name) is None]
    if missing:
        print(f"README.md has no <!-- table:NAME --> block for: {', '.join(missing)}", file=sys.stderr)
        return 1
    stale = stale_tables(readme)
    if args.check:
        if stale:
            print(
                f"README.md tables differ from bench/results: {', '.join(stale)}; run python bench/readme_tables.py"
            )
        return 1 if stale else 0
    for name in stale:
        readme = block(name).sub(
            lambda found, name=name: f"{found.group(1)}\n{TABLES[name]()}\n{found.group(2)}", readme
        )
    write_atomic(README, readme)
    print(f"rewrote {len(stale)} table(s): {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
