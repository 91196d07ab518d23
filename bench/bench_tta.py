"""Test-time augmentation with small shifts, scored on finished training runs: choose on val, score on test.

For each run folder (``outputs/bench-accuracy/<recipe>-s<seed>``: its ``summary.json`` names the checkpoint val
chose, ``.hydra/config.yaml`` its data settings) the best checkpoint labels val under every set of views
(the image shifted by whole pixels, zero-padded; softmax averaged over the views). The set with the best mean
val accuracy is chosen; only then is the test split scored, with no views and with the chosen set. The no-view
test accuracy must equal the run's own ``test_acc`` (a second path to the same number), else the bench stops.

    python bench/bench_tta.py --data-dir data outputs/bench-accuracy/mbv3_small-s{1,2,3} \
        --output bench/results/tta.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from benchlib import apply_threads, base_parser, finish, log, quiet_libraries, start_quiet, timed
from omegaconf import OmegaConf
from torch import Tensor

from digitcls.model.module import DigitClassifier, load_classifier
from digitcls.schema import validated
from digitcls.train import build_datamodule

PLUS_1 = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
VIEW_SETS: dict[str, list[tuple[int, int]]] = {
    "none": [(0, 0)],
    "plus1": PLUS_1,  # one pixel left, right, up, down
    "box1": [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)],  # the 8 neighbours
    "plus2": PLUS_1 + [(2, 0), (-2, 0), (0, 2), (0, -2)],  # one and two pixels along each axis
}
VIEW_NOTES = {
    "none": "the image as it is",
    "plus1": "and shifted 1 px left, right, up, down",
    "box1": "and shifted 1 px to each of its 8 neighbours",
    "plus2": "and shifted 1 and 2 px left, right, up, down",
}


def shifted(images: Tensor, dx: int, dy: int) -> Tensor:
    """``images`` moved ``dx`` pixels right and ``dy`` down; what enters is background (0)."""
    pad = max(abs(dx), abs(dy))
    height, width = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad))
    return padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]


@torch.no_grad()
def accuracies(
    model: DigitClassifier, loader: Any, view_sets: dict[str, list[tuple[int, int]]]
) -> dict[str, Any]:
    """Accuracy per view set, and seconds per image for each."""
    correct = dict.fromkeys(view_sets, 0)
    seconds = dict.fromkeys(view_sets, 0.0)
    seen = 0
    for images, labels in loader:
        images = images.float().div_(255.0)
        for name, views in view_sets.items():
            probabilities, spent = timed(sum, (model(shifted(images, dx, dy)).softmax(dim=1) for dx, dy in views))
            seconds[name] += spent
            correct[name] += int((probabilities.argmax(dim=1) == labels).sum())
        seen += len(labels)
    return {
        "acc": {name: correct[name] / seen for name in view_sets},
        "ms_per_image": {name: round(1000 * seconds[name] / seen, 3) for name in view_sets},
        "images": seen,
    }


def load_run(run: Path, data_dir: Path) -> tuple[DigitClassifier, Any, dict[str, Any]]:
    summary = json.loads((run / "summary.json").read_text())
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    for split in ("train", "val", "test"):
        cfg[f"{split}_path"] = str(data_dir / split)
    checkpoint = run / "checkpoints" / Path(summary["best_checkpoint"]).name  # the folder may have moved
    return load_classifier(checkpoint), build_datamodule(validated(cfg, "train")), summary


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="training run folders (summary.json, .hydra/)")
    args = parser.parse_args(argv)
    guard = start_quiet(args)
    apply_threads(args)
    quiet_libraries()

    runs = {str(run): load_run(run, args.data_dir) for run in args.runs}
    val: dict[str, Any] = {}
    for name, (model, datamodule, _) in runs.items():
        datamodule.setup("fit")
        val[name] = accuracies(model, datamodule.val_dataloader(), VIEW_SETS)
        log(f"{name} val: {val[name]['acc']}")
    val_means = {views: statistics.mean(val[run]["acc"][views] for run in runs) for views in VIEW_SETS}
    chosen = max(VIEW_SETS, key=lambda views: (val_means[views], -len(VIEW_SETS[views])))

    test: dict[str, Any] = {}
    scored = {views: VIEW_SETS[views] for views in dict.fromkeys(["none", chosen])}
    for name, (model, datamodule, summary) in runs.items():
        datamodule.setup("test")
        test[name] = accuracies(model, datamodule.test_dataloader(), scored)
        if abs(test[name]["acc"]["none"] - summary["test_acc"]) > 0.5 / test[name]["images"]:
            raise SystemExit(
                f"{name}: no-view test accuracy {test[name]['acc']['none']} != the run's {summary['test_acc']}"
            )
        log(f"{name} test: {test[name]['acc']}")

    def over_runs(split: dict[str, Any], views: str) -> dict[str, float]:
        values = [split[run]["acc"][views] for run in runs]
        return {"mean": round(statistics.mean(values), 5), "min": round(min(values), 5)}

    finish(
        "tta",
        args,
        {
            "metrics": {
                "chosen_on_val": chosen,
                "val_acc_mean": {views: round(mean, 5) for views, mean in val_means.items()},
                "test_acc_without": over_runs(test, "none"),
                "test_acc_with_chosen": over_runs(test, chosen),
                "inference_cost_ratio": round(
                    statistics.median(
                        test[run]["ms_per_image"][chosen] / test[run]["ms_per_image"]["none"] for run in runs
                    ),
                    2,
                ),
            },
            "details": {"view_sets": VIEW_SETS, "val": val, "test": test},
        },
        guard,
    )


if __name__ == "__main__":
    main()
