"""`make bench`: every benchmark in one process, one after the other, into bench/results/latest.{json,md}.

Each ratio is measured side by side within its own benchmark (see the scripts' docstrings); this
script adds the machine's facts and the quiet guard's verdict (``benchlib.QuietGuard``: it refuses to start
on a busy machine unless ``--busy-ok``), and writes the JSON and a
markdown table for the README, both atomically. ``--quick`` is a seconds-long smoke run that writes
``quick.json``/``quick.md`` instead, so it never overwrites the real figures.

    python bench/run_all.py [--quick] [--data-dir data] [--results-dir bench/results] [--only data,predict]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import bench_data
import bench_lightning
import bench_predict
import bench_train
from benchlib import (
    RESULTS_DIR,
    add_busy_ok,
    apply_threads,
    log,
    machine_facts,
    start_quiet,
    write_atomic,
    write_json,
)

BENCHES: dict[str, ModuleType] = {
    "data": bench_data,
    "lightning": bench_lightning,
    "predict": bench_predict,
    "train": bench_train,
}
RATIOS = (
    "data_throughput_ratio",
    "lightning_overhead_ratio",
    "lightning_share_of_matmul",
    "predict_throughput_ratio",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--raw-dir", type=Path, default=Path("data/raw"))
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run, not figures")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=None, help="output file stem (default: latest; --quick: quick)")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {list(BENCHES)}"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    parser.add_argument("--no-cli", action="store_true", help="skip timing `python -m digitcls.predict`")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    add_busy_ok(parser)
    return parser.parse_args(argv)


def _fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    metrics = result["metrics"]
    targets = result["targets"]
    details = result["details"]
    lines = [
        f"Measured with `make bench` on {machine['date'][:10]}: {machine['cpu_model']}, "
        f"{machine['cpu_usable']} cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"lightning {machine['lightning']}"
        + (" (**--quick smoke run: not figures**)" if result["quick"] else "")
        + ". Medians of the repeats; every repeat is in `bench/results/latest.json`.",
        "",
        "| ratio | ours | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]

    def met(name: str) -> str:
        return "yes" if targets[name]["met"] else "**no**"

    if "data" in details:
        d = details["data"]
        lines.append(
            f"| data throughput, img/s (batches of {d['batch_size']} at {d['img_size']} px, normalised) "
            f"| in-memory cache: {_fmt(metrics['data_inmemory_images_per_s'])} "
            f"| per-file OpenCV DataLoader, 2 workers: {_fmt(metrics['data_perfile_images_per_s'])} "
            f"| {metrics['data_throughput_ratio']:.2f}x | {targets['data_throughput_ratio']['target']} "
            f"| {met('data_throughput_ratio')} |"
        )
    if "lightning" in details:
        d = details["lightning"]
        lines.append(
            f"| training step, ms ({d['model_name']}, {d['img_size']} px, batch {d['batch_size']}, fp32) "
            f"| LightningModule + Trainer: {_fmt(metrics['lightning_ms_per_step'], 1)} "
            f"| plain PyTorch loop: {_fmt(metrics['plain_ms_per_step'], 1)} "
            f"| {metrics['lightning_overhead_ratio']:.3f} | {targets['lightning_overhead_ratio']['target']} "
            f"| {met('lightning_overhead_ratio')} |"
        )
        lines.append(
            f"| training GFLOP/s through Lightning (as above) "
            f"| LightningModule + Trainer: {_fmt(metrics['lightning_gflops'], 1)} "
            f"| 1024 x 1024 fp32 matmul: {_fmt(metrics['matmul_gflops'])} "
            f"| {metrics['lightning_share_of_matmul']:.1%} | {targets['lightning_share_of_matmul']['target']} "
            f"| {met('lightning_share_of_matmul')} |"
        )
    if "predict" in details:
        d = details["predict"]
        lines.append(
            f"| prediction, img/s ({d['files']:,} test PNGs, {d['img_size']} px) "
            f"| `make predict`'s batched labelling ({d['ours']['backend']}): {_fmt(metrics['predict_images_per_s'])} "
            f"| one image at a time: {_fmt(metrics['predict_one_at_a_time_images_per_s'], 1)} "
            f"| {metrics['predict_throughput_ratio']:.1f}x | {targets['predict_throughput_ratio']['target']} "
            f"| {met('predict_throughput_ratio')} |"
        )
    if "data" in details:
        build = details["data"]["cache_build"]
        lines += [
            "",
            f"The in-memory cache is built once per split: {build['cold_build_s']:.1f} s for the "
            f"{details['data']['train_images']:,} training images ({_fmt(build['cold_build_images_per_s'])} img/s), "
            f"{build['reload_from_disk_s']:.2f} s to read back from `data/.cache` on later runs.",
        ]
    if "predict" in details:
        lines += [
            "",
            f"On torch the same labelling runs at {_fmt(metrics['predict_torch_images_per_s'])} img/s "
            f"(onnxruntime {metrics['predict_onnx_vs_torch_speedup']:.2f}x that; pre.csv rows "
            f"{'identical' if metrics['predict_backends_agree'] else '**different**'} to 1e-4).",
        ]
    if "predict_cli_wall_s" in metrics:
        lines += [
            f"The whole `python -m digitcls.predict` command (start-up, imports, model, pre.csv, picture) labels "
            f"the {details['predict']['files']:,} test images in {metrics['predict_cli_wall_s']:.1f} s "
            f"(target {targets['predict_cli_wall_s']['target']} s: {met('predict_cli_wall_s')}), "
            f"{metrics['predict_cli_throughput_ratio']:.1f}x the one-at-a-time loop; "
            f"`import digitcls.predict` takes {metrics['predict_import_s']:.1f} s and `--help` "
            f"{metrics['predict_help_s']:.1f} s. The export the command runs is made once per checkpoint "
            f"({metrics['predict_onnx_export_s']:.1f} s) and loaded in {metrics['predict_cached_model_load_s']:.2f} s "
            "afterwards.",
        ]
    if "train" in details:
        d = details["train"]
        per_s = metrics["train_images_per_s"]
        sizes = sorted({int(key.split("@")[1]) for key in per_s})
        models = sorted({key.split("@")[0] for key in per_s})
        lines += [
            "",
            f"Training throughput, img/s (batch {d['batch_size']}, fp32, in-memory data, plain loop):",
            "",
            "| model | " + " | ".join(f"{size} px" for size in sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for model in models:
            cells = [_fmt(per_s.get(f"{model}@{size}", float("nan"))) for size in sizes]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        compiled = d["torch_compile"]
        compile_text = (
            f"torch.compile: {metrics['train_compile_speedup']:.2f}x eager (compiling took {compiled['compile_s']} s)"
            if "train_compile_speedup" in metrics
            else f"torch.compile: skipped ({compiled.get('skipped')})"
        )
        lines += [
            "",
            f"channels_last: {metrics['train_channels_last_speedup']:.2f}x contiguous (NCHW) memory format; "
            f"bf16 autocast: {metrics['train_bf16_mixed_speedup']:.2f}x fp32; {compile_text}. "
            f"End to end, training fed by the in-memory path runs "
            f"{metrics['train_inmemory_vs_per_file_speedup']:.2f}x as fast as fed by the per-file loader.",
        ]
    if result["busy"]:
        lines += [
            "",
            f"**The machine was busy during this run** ({'; '.join(result['quiet']['why_busy'])}): "
            "the figures are low and noisy, and bench/readme_tables.py will not publish them.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHES]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    common = ["--data-dir", str(args.data_dir), "--raw-dir", str(args.raw_dir)]
    common += ["--quick"] if args.quick else []
    common += ["--threads", str(args.threads)] if args.threads else []
    apply_threads(args)
    guard = start_quiet(args)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": "python bench/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": machine_facts(),
        "metrics": {},
        "targets": {},
        "details": {},
        "wall_s": {},
        "notes": {},
    }
    for name in chosen:
        module = BENCHES[name]
        extra = ["--no-compile"] if name == "train" and args.no_compile else []
        extra += ["--no-cli"] if name == "predict" and args.no_cli else []
        log(f"== {name}")
        bench_started = time.perf_counter()
        part = module.run(module.parse_args(common + extra))
        result["wall_s"][name] = round(time.perf_counter() - bench_started, 1)
        result["metrics"].update(part["metrics"])
        result["targets"].update(part["targets"])
        result["details"][name] = part["details"]
        if part.get("notes"):
            result["notes"][name] = part["notes"]
    result["quiet"] = guard.record()
    result["busy"] = result["quiet"]["busy"]
    result["wall_s"]["total"] = round(time.perf_counter() - started, 1)

    stem = args.name or ("quick" if args.quick else "latest")
    json_path = args.results_dir / f"{stem}.json"
    md_path = args.results_dir / f"{stem}.md"
    write_json(json_path, result)
    write_atomic(md_path, markdown(result))
    print(markdown(result))
    for name in RATIOS:
        if name in result["targets"]:
            target = result["targets"][name]
            print(
                f"{name}: {result['metrics'][name]} (target {target['target']}: {'met' if target['met'] else 'NOT met'})"
            )
    print(f"wrote {json_path} and {md_path} in {result['wall_s']['total']:.0f} s")
    return result


if __name__ == "__main__":
    main()
