"""Short runs on small folders: val/test accuracy with and without precise BatchNorm, side by side.

For each (training images, epochs) setting, trains the ``mbv3`` recipe once with ``precise_bn_batches=0``
(validating once, after the last epoch), then scores the *same final weights* with four sets of BatchNorm
statistics:

* ``running``: the momentum-averaged statistics training left behind (what validation saw before precise BN);
* ``precise N``: recomputed exactly as the callback does before each validation (the first N training
  batches, not augmented): what ``precise_bn_batches=N`` validates and saves;
* ``all``/``all+aug``: recomputed on every training batch, without/with the training augmentation (the
  reference "freshly computed statistics", and the augmentation question).

Training is bit for bit the same with or without the callback (``tests/unit/test_precise_bn.py``): with a
one-cycle schedule nothing in training reads val accuracy, so these are the weights both runs end with.
``top class`` is the share of val images given the most frequent prediction (10 % = balanced; 100 % = a
collapse onto one class).

    python bench/bench_short_runs.py --data-dir data --output bench/results/short_runs.json [--settings 2000x3,1000x1]
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from benchlib import (
    REPO_ROOT,
    apply_threads,
    base_parser,
    ensure_data,
    finish,
    quiet_libraries,
    start_quiet,
    timed,
)
from hydra import compose, initialize_config_module
from torch.nn.modules.batchnorm import _BatchNorm

from digitcls.callbacks.precise_bn import recompute_batchnorm_statistics
from digitcls.data.datamodule import DigitDataModule
from digitcls.data.transforms import batch_augment
from digitcls.model.module import load_classifier
from digitcls.schema import validated
from digitcls.train import build_datamodule, train


def parse_settings(text: str) -> list[tuple[int, int]]:
    return [(int(items), int(epochs)) for items, epochs in (part.split("x") for part in text.split(","))]


def recipe(data_dir: Path, out: Path, items: int, epochs: int, seed: int) -> Any:
    overrides = [
        "+experiment=mbv3", f"try_to_train_items={items}", f"epochs={epochs}", "precise_bn_batches=0",
        f"+trainer.check_val_every_n_epoch={epochs}", f"random_seed={seed}", "trainer.enable_progress_bar=false",
        f"output_dir={out}", *(f"{split}_path={data_dir / split}" for split in ("train", "val", "test")),
    ]  # fmt: skip
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def training_images(
    datamodule: DigitDataModule, batches: int | None, augment: bool
) -> Iterator[torch.Tensor]:
    for images, _ in islice(datamodule.train_dataloader(), batches):
        yield batch_augment(images, datamodule.augment) if augment else images


@torch.no_grad()
def score(model: torch.nn.Module, loader: Any) -> tuple[float, float]:
    """Accuracy and the share of the most frequent prediction."""
    predictions, labels = [], []
    for images, targets in loader:
        predictions.append(model(images).argmax(1))
        labels.append(targets)
    predicted, truth = torch.cat(predictions), torch.cat(labels)
    return (predicted == truth).float().mean().item(), torch.bincount(predicted).max().item() / len(predicted)


def measure(data_dir: Path, out: Path, items: int, epochs: int, batches: int, seed: int) -> dict[str, Any]:
    cfg = recipe(data_dir, out, items, epochs, seed)
    summary, train_s = timed(lambda: train(cfg))
    model = load_classifier(Path(summary["best_checkpoint"]).parent / "last.ckpt")
    datamodule = build_datamodule(validated(cfg, "train"))
    datamodule.setup("fit")
    datamodule.setup("test")
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    # validated once, after the last epoch: the run's best checkpoint is its last, tested with running stats
    row: dict[str, Any] = {"items": items, "epochs": epochs, "train_s": round(train_s, 1),
                           "test running": summary["test_acc"]}  # fmt: skip
    variants = {
        "running": None,
        f"precise {batches}": (batches, False),
        "all": (None, False),
        "all+aug": (None, True),
    }
    for name, how in variants.items():
        if how is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                recompute_batchnorm_statistics(model, layers, training_images(datamodule, *how))
        model.eval()
        row[f"val {name}"], row[f"top class {name}"] = score(model, datamodule.val_dataloader())
        if name == f"precise {batches}":
            row[f"test {name}"], _ = score(model, datamodule.test_dataloader())
    return row


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--settings", default="2000x3,1000x1", help="ITEMSxEPOCHS,... (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=32, help="precise_bn_batches to compare (default: 32)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    guard = start_quiet(args)
    apply_threads(args)
    quiet_libraries()
    data_dir = ensure_data(args.data_dir, args.raw_dir)
    settings = [(200, 1)] if args.quick else parse_settings(args.settings)
    rows = []
    for items, epochs in settings:
        out = REPO_ROOT / "outputs" / "bench-short-runs" / f"{items}x{epochs}"
        rows.append(measure(data_dir, out, items, epochs, args.batches, args.seed))
        print_table(rows, args.batches)
    finish("short_runs", args, {"metrics": {"batches": args.batches, "rows": rows}}, guard)


def print_table(rows: list[dict[str, Any]], batches: int) -> None:
    def pct(value: float) -> str:
        return f"{value:.1%}"

    precise = f"precise {batches}"
    print(
        f"\n| images x epochs | val / test: running stats (top class) | val / test: {precise} (top class) "
        "| val: all batches | val: all batches, augmented | train s |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['items']:,} x {r['epochs']} "
              f"| {pct(r['val running'])} / {pct(r['test running'])} ({pct(r['top class running'])}) "
              f"| {pct(r[f'val {precise}'])} / {pct(r[f'test {precise}'])} ({pct(r[f'top class {precise}'])}) "
              f"| {pct(r['val all'])} | {pct(r['val all+aug'])} | {r['train_s']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
