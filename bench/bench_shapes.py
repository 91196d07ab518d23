"""Which MobileNetV3 shape learns MNIST fastest on a CPU: val accuracy per CPU-minute, side by side.

For every (model, input size, output stride) it first measures the cost of one training step
(forward + backward + SGD step on a random batch, the variants interleaved so that machine noise hits all
of them alike), then trains the ``mbv3`` recipe for ONE epoch on an equal-compute budget: each variant
sees ``--budget`` images divided by its cost relative to ``mobilenetv3``/28 px/stride 32. So every row
spends about the same CPU time and the val accuracy says which shape buys the most accuracy per minute.
Only val accuracy is recorded: recipes are chosen on val, never on the test set.

    python bench/bench_shapes.py --data-dir data [--budget 20000] [--seed 42] [--quick]
"""

from __future__ import annotations

import resource
import time
from itertools import product
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    REPO_ROOT,
    apply_threads,
    base_parser,
    ensure_data,
    finish,
    log,
    quiet_libraries,
    ratio,
    start_quiet,
)
from hydra import compose, initialize_config_module
from torch import nn

from digitcls.choices import MOBILENET_NAMES, OUTPUT_STRIDES
from digitcls.model.backbones import build_backbone
from digitcls.train import train

IMG_SIZES = (28, 32)
REFERENCE = ("mobilenetv3", 28, 32)
Variant = tuple[str, int, int]


def step_costs(variants: list[Variant], batch: int, rounds: int) -> dict[Variant, float]:
    """Median seconds of one training step per variant, rounds interleaved across variants."""
    torch.manual_seed(0)
    setups = {}
    for name, size, stride in variants:
        model = build_backbone(name, 10, output_stride=stride).to(memory_format=torch.channels_last).train()
        images = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
        setups[(name, size, stride)] = (model, torch.optim.SGD(model.parameters(), lr=0.01), images)
    labels = torch.randint(0, 10, (batch,))
    times: dict[Variant, list[float]] = {variant: [] for variant in variants}
    for round_index in range(rounds + 1):
        for variant, (model, optimizer, images) in setups.items():
            start = time.perf_counter()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
            if round_index:  # the first round warms up the allocator and oneDNN's kernels
                times[variant].append(time.perf_counter() - start)
    return {variant: sorted(values)[len(values) // 2] for variant, values in times.items()}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_one(variant: Variant, items: int, data_dir: Path, seed: int) -> dict[str, Any]:
    name, size, stride = variant
    overrides = [
        "+experiment=mbv3", f"model_name={name}", f"img_size={size}", f"output_stride={stride}", "epochs=1",
        f"try_to_train_items={items}", f"random_seed={seed}", "trainer.enable_progress_bar=false",
        f"output_dir={REPO_ROOT / 'outputs/bench-shapes' / f'{name}-{size}-os{stride}'}",
        f"train_path={data_dir / 'train'}", f"val_path={data_dir / 'val'}",
        f"test_path={data_dir / 'val'}",  # the bench never reads the test set
    ]  # fmt: skip
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    wall, cpu = time.perf_counter(), cpu_seconds()
    summary = train(cfg)
    return {
        "train_images": items,
        "val_acc": summary["best_val_acc"],
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(cpu_seconds() - cpu, 1),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20_000, help="images the reference shape trains on")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    guard = start_quiet(args)
    apply_threads(args)
    quiet_libraries()
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    variants = list(product(MOBILENET_NAMES, IMG_SIZES, OUTPUT_STRIDES))
    costs = step_costs(variants, batch=64, rounds=2 if args.quick else 5)
    budget = 256 if args.quick else args.budget
    rows = []
    for variant in variants:
        relative_cost = costs[variant] / costs[REFERENCE]
        items = max(128, int(budget / relative_cost))
        log(f"shapes: {variant} cost x{relative_cost:.2f} -> {items} training images")
        row = {
            "model": variant[0],
            "img_size": variant[1],
            "output_stride": variant[2],
            "step_cost_vs_reference": round(relative_cost, 3),
            **train_one(variant, items, data_dir, args.seed),
        }
        row["val_acc_per_cpu_minute"] = ratio(row["val_acc"], row["cpu_s"] / 60)
        rows.append(row)
        log(
            f"shapes: {variant}: val acc {row['val_acc']:.4%} in {row['cpu_s']:.0f} CPU-s ({row['wall_s']:.0f} s wall)"
        )
    rows.sort(key=lambda row: -row["val_acc"])
    print("\n| model | img | stride | step cost | train images | val acc | CPU-s | val acc / CPU-min |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['img_size']} | {row['output_stride']} | x{row['step_cost_vs_reference']:.2f} "
            f"| {row['train_images']} | {row['val_acc']:.2%} | {row['cpu_s']:.0f} | {row['val_acc_per_cpu_minute']:.3f} |"
        )
    finish("shapes", args, {"metrics": {"budget": budget, "seed": args.seed, "rows": rows}}, guard)


if __name__ == "__main__":
    main()
