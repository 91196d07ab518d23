"""Seconds of training to 99.0 % and 99.5 % MNIST test accuracy on one GPU.

Everything a GPU run can keep on the device stays there: the three splits are decoded once (the in-memory
path, ``data/.cache``) and moved to the GPU as uint8 tensors; batches are sliced there, augmented there
(``transforms.batch_augment``) and fed to digitcls's own ``DigitClassifier`` in ``channels_last`` under
bf16 (or fp16) autocast, with SGD + one-cycle and the label-smoothing loss. Test accuracy is measured
every ``--evals-per-epoch`` of an epoch; the training clock stops while it is measured, so the figures
are seconds of *training*. A few warm-up steps (CUDA context, cuDNN autotuning) run before the clock
starts and are reported separately.

    python bench/gpu_time_to_accuracy.py [--batch-size 512] [--epochs 8] [--lr 0.4]
    python bench/gpu_time_to_accuracy.py --device cpu --quick     # a smoke run of the code path

(``bench/gpu_time_to_accuracy.sh`` runs the GPU figures with the defaults and writes the JSON result.)
"""

from __future__ import annotations

import argparse
import inspect
import time
from typing import Any

import torch
from benchlib import base_parser, ensure_data, finish, log, quiet_libraries, start_quiet
from torch import Tensor

from digitcls.data.cache import load_split
from digitcls.data.datamodule import ImageFolderDataset, train_subset
from digitcls.data.folders import discover_classes, labelled_samples
from digitcls.data.transforms import batch_augment
from digitcls.model.module import DigitClassifier
from digitcls.model.optim import build_optimizer

THRESHOLDS = (0.990, 0.995)
AUGMENT = {"degrees": 10.0, "translate": 0.1, "scale": [0.9, 1.1]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    parser.add_argument("--model-name", default="mobilenetv3")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--output-stride", type=int, default=None, help="when the model supports it")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.4, help="one-cycle peak learning rate (SGD)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--evals-per-epoch", type=int, default=4)
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--train-items", type=int, default=0, help="0 = the whole training split")
    parser.add_argument(
        "--test-items", type=int, default=0, help="0 = the whole test split (the figures use it)"
    )
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def split_on_device(
    data_dir: Any, split: str, classes: list[str], img_size: int, device: torch.device, items: int, seed: int
) -> tuple[Tensor, Tensor]:
    """A split as uint8/int64 tensors on ``device``; ``items`` > 0 keeps a seeded random subset."""
    samples = train_subset(labelled_samples(data_dir / split, classes, split), items, seed)
    images, labels = load_split(ImageFolderDataset(samples, (img_size, img_size)), cache_dir=data_dir / ".cache")
    return images.to(device), labels.to(device)


def build_model(args: argparse.Namespace, classes: list[str], device: torch.device) -> DigitClassifier:
    kwargs: dict[str, Any] = {
        "model_name": args.model_name,
        "class_names": classes,
        "img_size": (args.img_size, args.img_size),
    }
    if args.output_stride is not None:
        if "output_stride" not in inspect.signature(DigitClassifier).parameters:
            raise SystemExit("--output-stride: this digitcls's DigitClassifier has no output_stride")
        kwargs["output_stride"] = args.output_stride
    return DigitClassifier(**kwargs).to(device)


@torch.inference_mode()
def accuracy(model: DigitClassifier, images: Tensor, labels: Tensor, batch: int, autocast: Any) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch):
        with autocast():
            logits = model(images[start : start + batch])
        correct += int((logits.argmax(1) == labels[start : start + batch]).sum())
    model.train()
    return correct / len(labels)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    guard = start_quiet(args)
    quiet_libraries()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device visible: run this on a GPU machine (or --device cpu for a smoke run)"
        )
    if args.quick:
        args.train_items, args.test_items, args.epochs, args.batch_size, args.evals_per_epoch = (
            512,
            256,
            1,
            64,
            2,
        )
    if device.type == "cpu":
        args.precision = "fp32"  # bf16 autocast is slower than fp32 on CPU (bench_train.py)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True

    data_dir = ensure_data(args.data_dir, args.raw_dir)
    classes = discover_classes(data_dir / "train")
    train_x, train_y = split_on_device(
        data_dir, "train", classes, args.img_size, device, args.train_items, args.seed
    )
    test_x, test_y = split_on_device(
        data_dir, "test", classes, args.img_size, device, args.test_items, args.seed
    )
    log(f"time-to-accuracy: {len(train_y)} train / {len(test_y)} test images on {device}")

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.precision]

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    model = build_model(args, classes, device)
    model.train()
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    optimizer = build_optimizer("SGD", model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-len(train_y) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=steps_per_epoch * args.epochs
    )
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    def step(images: Tensor, labels: Tensor) -> None:
        with autocast():
            loss = criterion(model(batch_augment(images, AUGMENT)), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    # warm-up steps on a copy of the weights' state: CUDA context and cuDNN autotuning, off the clock
    state = {k: v.clone() for k, v in model.state_dict().items()}
    warm_started = time.perf_counter()
    for _ in range(3):
        step(train_x[: args.batch_size], train_y[: args.batch_size])
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - warm_started
    model.load_state_dict(state)
    optimizer.state.clear()

    eval_every = max(1, steps_per_epoch // args.evals_per_epoch)
    trained_s, curve, reached = 0.0, [], {}  # reached: threshold -> seconds of training
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_y), device=device)
        started = time.perf_counter()
        for index in range(steps_per_epoch):
            rows = order[index * args.batch_size : (index + 1) * args.batch_size]
            step(train_x[rows], train_y[rows])
            schedule.step()
            last = index == steps_per_epoch - 1
            if (index + 1) % eval_every == 0 or last:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                trained_s += time.perf_counter() - started
                acc = accuracy(model, test_x, test_y, 2048, autocast)
                curve.append({"epoch": round(epoch + (index + 1) / steps_per_epoch, 3), "train_s": round(trained_s, 2),
                              "test_acc": round(acc, 5)})  # fmt: skip
                for threshold in THRESHOLDS:
                    if acc >= threshold and threshold not in reached:
                        reached[threshold] = trained_s
                log(f"epoch {curve[-1]['epoch']:.2f}: {trained_s:.1f} s of training, test acc {acc:.4%}")
                started = time.perf_counter()

    metrics = {
        "seconds_to_99_0": None if reached.get(0.990) is None else round(reached[0.990], 2),
        "seconds_to_99_5": None if reached.get(0.995) is None else round(reached[0.995], 2),
        "final_test_acc": curve[-1]["test_acc"],
        "train_seconds": round(trained_s, 2),
        "warmup_seconds": round(warmup_s, 2),
        "images_per_s": round(len(train_y) * args.epochs / trained_s, 1),
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("output",)}
    settings = {
        k: str(v) if not isinstance(v, (int, float, str, type(None))) else v for k, v in settings.items()
    }
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return finish("gpu_time_to_accuracy", args, {"metrics": metrics, "device": device_name,
                                                 "settings": settings, "curve": curve}, guard)  # fmt: skip


if __name__ == "__main__":
    main()
