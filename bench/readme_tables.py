"""The docs' measured figures, generated from the result files in ``bench/results/`` (never typed by hand).

Each table sits in README.md or one of docs/*.md between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``
(once in all of them), with the machine and date it was measured on. A busy result (``benchlib.QuietGuard``:
measured with ``--busy-ok`` or disturbed by other processes, or an older file that recorded a 1-minute load
average above ``BUSY_PER_CORE`` per core, or no load at all) is never published: its block says it has not
been measured quietly yet, and this script names it on stderr.

    python bench/readme_tables.py           # rewrite every stale table from the result files
    python bench/readme_tables.py --check   # exit 1, naming the tables that differ (tests/unit runs this)
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench_accuracy import TARGETS, meets_target
from bench_tta import VIEW_NOTES
from benchlib import BUSY_PER_CORE, REPO_ROOT, RESULTS_DIR, write_atomic
from hydra import compose, initialize_config_module

from digitcls.choices import parse_img_size

README = REPO_ROOT / "README.md"
DOCS_DIR = REPO_ROOT / "docs"
MET = {True: "yes", False: "no", None: "—"}
NOT_QUIET = "not measured quietly yet"


class NotQuiet(Exception):
    """A result file (or record) that must not be published: the message says why."""


def why_not_quiet(record: dict[str, Any]) -> str | None:
    """Why ``record`` (a result, or one recipe's record in it) is busy; None when it was measured quietly."""
    if record.get("quick"):
        return "a --quick smoke run"
    quiet = record.get("quiet")
    if quiet is not None:
        return "; ".join(quiet["why_busy"]) if quiet["busy"] else None
    machine = record.get("machine") or {}  # written before the quiet guard: judged by the load it recorded
    load, cores = machine.get("load_average_1_5_15"), machine.get("cpu_count")
    if not load or not cores:
        return "no record of the machine's load"
    if load[0] > BUSY_PER_CORE * cores:
        return f"recorded at a 1-minute load average of {load[0]:.2f} on {cores} cores (above {BUSY_PER_CORE} per core)"
    return None


def read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS_DIR / f"{name}.json").read_text())


def load(name: str) -> dict[str, Any]:
    """``bench/results/<name>.json``; raises ``NotQuiet`` when it, or any recipe in it, is busy."""
    result = read(name)
    for record in result["recipes"].values() if "recipes" in result else [result]:
        reason = why_not_quiet(record)
        if reason:
            raise NotQuiet(f"bench/results/{name}.json: {reason}")
    return result


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def percent(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f} %"


def where(result: dict[str, Any]) -> str:
    machine = result["machine"]
    return f"{machine['cpu_model']} ({machine['cpu_count']} cores), {machine['date'][:10]}"


def measured_on(result: dict[str, Any]) -> str:
    """The caption under a table whose rows do not name the machine."""
    return f"\n\nMeasured on {where(result)}."


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
            "`lightning_share_of_matmul`: training GFLOP/s through Lightning (as above) over an fp32 matmul's",
            f"LightningModule + Trainer: {run['lightning_gflops']:.1f} GFLOP/s",
            f"1024 x 1024 fp32 matmul: {run['matmul_gflops']:.0f} GFLOP/s",
            f"**{percent(run['lightning_share_of_matmul'], 1)}**",
            *target(latest, "lightning_share_of_matmul"),
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
    return table(["ratio", "ours", "baseline", "ratio", "target", "met", "measured on"], rows)


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


def ops_table() -> str:
    result = load("ops")
    metrics, details = result["metrics"], result["details"]
    rows = [
        [kind, percent(row["share_of_step_time"], 1), percent(row["share_of_flops"], 1) if row["share_of_flops"] else "—",
         f"{row['gflops']:.1f}" if row["gflops"] else "—", percent(row["share_of_matmul"], 1) if row["gflops"] else "—"]
        for kind, row in metrics["kinds"].items()
    ]
    rows.append(["**the whole step**", "100 %", "100 %", f"**{metrics['step_gflops']:.1f}**",
                 f"**{percent(metrics['step_share_of_matmul'], 1)}**"])
    header = ["kind of operation", "share of the step's time", "share of its FLOPs", "GFLOP/s",
              f"share of the {metrics['matmul_peak_gflops']:.0f} GFLOP/s fp32 matmul"]
    return table(header, rows) + (
        f"\n\n{details['model']}, {details['img_size']} px, batch {details['batch_size']}, "
        f"{'channels_last' if details['channels_last'] else 'NCHW'}, {details['precision']}, AdamW; "
        f"{details['steps']} profiled steps. Measured on {where(result)}.\n\nWere everything but the dense "
        "convolutions and linear layers free, the step would reach "
        f"**{percent(metrics['ceiling_share_of_matmul'], 1)}** of the matmul rate.\n\nOne optimizer step on the model's "
        "weights (unprofiled, medians), torch's fused update, which `build_optimizer` asks for, against torch's "
        "CPU default, a loop over the weight tensors: "
        + "; ".join(f"{name} {ms['fused_ms']:.1f} ms against {ms['loop_ms']:.1f} ms "
                    f"(**{metrics['fused_optimizer_speedup'][name]:.1f}×** faster)"
                    for name, ms in metrics["optimizer_step_ms"].items())
        + "."
    )


# --- accuracy ---------------------------------------------------------------------------------------------------


def recipe_names() -> list[str]:
    """The experiment files, the quick recipe first, then the main one, then the rest."""
    names = sorted(path.stem for path in (REPO_ROOT / "conf" / "experiment").glob("*.yaml"))
    first = [name for name in ("mbv3_quick", "mbv3") if name in names]
    return first + [name for name in names if name not in first]


@functools.cache
def recipe_shape(recipe: str) -> list[str]:
    """What ``+experiment=<recipe>`` trains, from the composed config (not from a results file)."""
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"+experiment={recipe}"])
    height, width = parse_img_size(cfg.img_size)
    size = f"{height} px" if height == width else f"{height}x{width} px"
    stride = cfg.get("output_stride") or 32
    return [
        f"{cfg.model_name}, {size}, output stride {stride}",
        f"{cfg.optimizer} {cfg.learning_rate:g}, {cfg.scheduler}",
        str(cfg.epochs),
    ]


def recipe_figures(recipe: str, record: dict[str, Any] | None) -> list[str]:
    """Test accuracy over the seeds, wall time per run, where and when, target met: only from a quiet record."""
    if record is None or "seeds" not in record:
        return [NOT_QUIET, "", "", "", ""]
    if why_not_quiet(record):
        return [f"{NOT_QUIET} ({why_not_quiet(record)})", "", "", "", ""]
    seeds = ", ".join(str(line["seed"]) for line in record["seeds"])
    accuracy = (
        f"**{record['test_acc_mean']:.2%}** over seeds {seeds} "
        f"(min {record['test_acc_min']:.2%}, sd {100 * (record['test_acc_sd'] or 0):.2f} points; "
        f"val {record['val_acc_mean']:.2%})"
    )
    wall = f"{record['wall_time_s_median'] / 60:.1f} min (max {record['wall_time_s_max'] / 60:.1f})"
    min_acc, max_s = TARGETS.get(recipe, (None, None))
    target = f"mean ≥ {min_acc:.2%} in ≤ {max_s / 60:g} min" if min_acc else "—"
    met = meets_target(recipe, record["test_acc_mean"], record["wall_time_s_max"])
    return [accuracy, wall, where(record), target, MET[met]]


def accuracy_table() -> str:
    recipes = read("accuracy")["recipes"]
    header = [
        "recipe", "model, input", "optimizer, schedule", "epochs", "test accuracy", "wall time per run",
        "measured on", "target", "met",
    ]  # fmt: skip
    rows = [
        [f"`+experiment={name}`", *recipe_shape(name), *recipe_figures(name, recipes.get(name))]
        for name in recipe_names()
    ]
    return table(header, rows)


def shapes_table() -> str:
    result = load("shapes")
    rows = sorted(result["metrics"]["rows"], key=lambda row: -row["val_acc"])
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
    ) + measured_on(result)


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
    ) + measured_on(result)


def ema_table() -> str:
    """mbv3_small's seeds without and with ``ema_decay`` (``ema.json``: the same bench, one override added). The
    runs without EMA are the recipe's record these were compared with, kept in ``ema.json`` (``mbv3_small_no_ema``):
    ``accuracy.json``'s record moves on with the code and the machine, a comparison must not."""
    ema = load("ema")
    without, with_ema = ema["recipes"]["mbv3_small_no_ema"], ema["recipes"]["mbv3_small"]
    assert without["machine"]["cpu_model"] == with_ema["machine"]["cpu_model"], "compare on one machine"
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
    ) + measured_on(with_ema)


def short_runs_table() -> str:
    measured = load("short_runs")
    result = measured["metrics"]
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
    return table(header, rows) + measured_on(measured)


def serve_table() -> str:
    result = load("serve")
    metrics = result["metrics"]
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
    return table(["setting", "requests/s", "p50", "p99", "answered / lost"], rows) + measured_on(result)


TABLES: dict[str, Callable[[], str]] = {
    "ratios": ratios_table,
    "predict": predict_table,
    "train": train_table,
    "ops": ops_table,
    "accuracy": accuracy_table,
    "shapes": shapes_table,
    "tta": tta_table,
    "ema": ema_table,
    "short_runs": short_runs_table,
    "serve": serve_table,
}


def render(name: str) -> str:
    """The block's text: the table, or why its result file is not published."""
    try:
        return TABLES[name]()
    except NotQuiet as refused:
        return (
            f"*{NOT_QUIET.capitalize()}:* {refused}. See docs/benchmarks.md for the command that measures it."
        )


def refusals() -> dict[str, str]:
    """Each table whose result is busy, with the reason (printed by ``main``)."""
    found = {}
    for name, make in TABLES.items():
        try:
            make()
        except NotQuiet as refused:
            found[name] = str(refused)
    return found


def doc_files() -> list:
    return [README, *sorted(DOCS_DIR.glob("*.md"))]


def block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- table:{name} -->\n)(.*?)(<!-- /table:{name} -->)", re.DOTALL)


def readme_table(text: str, name: str) -> str | None:
    found = block(name).search(text)
    return found.group(2).strip("\n") if found else None


def stale_tables(text: str) -> list[str]:
    """The generated tables in ``text`` (one doc file's) that differ from what the results give."""
    return [name for name in TABLES if block(name).search(text) and readme_table(text, name) != render(name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report tables that differ from the results"
    )
    args = parser.parse_args(argv)
    texts = {path: path.read_text(encoding="utf-8") for path in doc_files()}
    homes = {name: [path.name for path, text in texts.items() if block(name).search(text)] for name in TABLES}
    misplaced = {name: places for name, places in homes.items() if len(places) != 1}
    if misplaced:
        print(
            f"each table needs exactly one <!-- table:NAME --> block in README.md or docs/*.md: {misplaced}",
            file=sys.stderr,
        )
        return 1
    for name, reason in refusals().items():
        print(f"not publishing table {name}: {reason}", file=sys.stderr)
    stale = {path: stale_tables(text) for path, text in texts.items()}
    stale = {path: names for path, names in stale.items() if names}
    if args.check:
        for path, names in stale.items():
            print(
                f"{path.name}: tables differ from bench/results: {', '.join(names)}; run python bench/readme_tables.py"
            )
        return 1 if stale else 0
    for path, names in stale.items():
        text = texts[path]
        for name in names:
            text = block(name).sub(
                lambda found, name=name: f"{found.group(1)}\n{render(name)}\n\n{found.group(3)}", text
            )
        write_atomic(path, text)
        print(f"{path.name}: rewrote {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
