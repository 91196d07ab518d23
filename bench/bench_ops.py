"""Where a training step's time goes, by kind of operation: the numbers behind ``lightning_share_of_matmul``.

MobileNetV3-large at 32 px, batch 128, channels_last, fp32, the plain training step of ``bench_train.py``
(forward, label-smoothing loss, backward, AdamW step), profiled with ``torch.profiler`` over ``--steps`` steps
after a warm-up. Every aten op's self CPU time goes to one kind: convolutions are told apart by their weight's
shape (depthwise: one input channel per group and a k x k kernel, k > 1; dense: the rest, 1 x 1 and the 3 x 3
stem), whichever kernel runs them, the others by name. FLOPs per kind come from forward hooks on the convolutions and linear layers
(2 x multiply-adds, x 3 for training: ``benchlib.training_flops_per_image``'s convention, checked against its
total); batch norm, activations and the other elementwise ops do a few FLOPs per element and count none.

Each kind's GFLOP/s over the same run's fp32 matmul rate says which operations hold the step below the 25 %
target; ``ceiling_share_of_matmul`` is what the step would reach if everything but the dense convolutions and
linear layers took no time at all.

The same run times one optimizer step on the model's weights with torch's fused update (what ``build_optimizer``
asks for) against torch's CPU default, a loop over the weight tensors, rounds interleaved: the
``fused_optimizer_speedup`` of AdamW and SGD.

    python bench/bench_ops.py [--quick] [--steps 10] [--output bench/results/ops.json]
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from bench_train import LABEL_SMOOTH, Trainee
from benchlib import (
    MODEL_NAME,
    apply_threads,
    base_parser,
    finish,
    log,
    matmul_gflops,
    quiet_libraries,
    ratio,
    start_quiet,
    timed,
    training_flops_per_image,
)
from torch import Tensor, nn

from digitcls.model.optim import OPTIMIZERS

IMG_SIZE = 32
DENSE, DEPTHWISE, LINEAR = "dense convolutions", "depthwise convolutions", "linear layers"
OPTIMIZER, OTHER = "optimizer step (AdamW)", "autograd and dispatch (the rest)"
# kind -> substrings of the aten op's name; the first kind that matches wins. Convolutions are classified by
# their weight's shape (`kind_of`), and everything the optimizer runs by its record_function range.
KINDS_BY_NAME = {
    "batch norm": ("batch_norm",),
    "activations (hardswish, ReLU, hardsigmoid)": ("hardswish", "hardsigmoid", "relu", "clamp_min",
                                                  "threshold_backward"),
    LINEAR: ("addmm", "::mm"),
    "loss": ("log_softmax", "nll_loss"),
    "input scaling (uint8 to normalised float)": ("_to_copy", "::to", "::sub", "::div"),
    "SE pooling and scaling, residual adds, gradient copies": ("mean", "mul", "add", "sum", "copy_", "empty",
                                                              "AccumulateGrad"),
}


def convolution_kind(in_channels_per_group: int, kernel_area: int) -> str:
    """Depthwise: one input channel per group and a k x k kernel, k > 1; dense: every other convolution."""
    return DEPTHWISE if in_channels_per_group == 1 and kernel_area > 1 else DENSE


def kind_of(event: Any) -> str:
    """The kind of one profiler event (a ``torch.autograd.profiler_util.FunctionEvent``). A convolution's work runs
    in whichever kernel torch picks for its shape and thread count (oneDNN, ``_slow_conv2d_forward``, ...), so
    every op under ``aten::convolution`` or ``aten::convolution_backward`` is classified by that op's weight."""
    ancestor = event
    while ancestor is not None:
        name, shapes = ancestor.name, ancestor.input_shapes
        if name.startswith("Optimizer."):
            return OPTIMIZER
        if name in ("aten::convolution", "aten::convolution_backward"):
            weight = shapes[2] if name.endswith("backward") else shapes[1]  # out, in per group, kh, kw
            return convolution_kind(weight[1], weight[2] * weight[3])
        ancestor = ancestor.cpu_parent
    for kind, parts in KINDS_BY_NAME.items():
        if any(part in event.name for part in parts):
            return kind
    return OTHER


def flops_by_kind(model: nn.Module, images: Tensor) -> dict[str, float]:
    """Training FLOPs per image of the convolutions (dense / depthwise) and linear layers, from forward hooks."""
    flops: dict[str, float] = defaultdict(float)

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            in_per_group, kernel_area = module.in_channels // module.groups, math.prod(module.kernel_size)
            macs = output.numel() * in_per_group * kernel_area
            flops[convolution_kind(in_per_group, kernel_area)] += 3 * 2 * macs / len(images)
        else:
            flops[LINEAR] += 3 * 2 * output.numel() * module.in_features / len(images)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return dict(flops)


def optimizer_step_ms(model: nn.Module, rounds: int) -> dict[str, dict[str, float]]:
    """Median ms of one optimizer step on ``model``'s weights, torch's fused update against its CPU default
    (a loop over the tensors), rounds interleaved; AdamW and SGD as ``build_optimizer`` configures them."""
    params = [nn.Parameter(p.detach().clone()) for p in model.parameters()]
    for param in params:
        param.grad = torch.randn_like(param)
    optimizers = {}
    for name in ("AdamW", "SGD"):
        cls, options = OPTIMIZERS[name]
        for fused in (True, False):
            optimizers[name, fused] = cls(params, lr=1e-3, weight_decay=1e-4, **{**options, "fused": fused})
    times: dict[tuple[str, bool], list[float]] = defaultdict(list)
    for round_index in range(rounds + 1):
        for key, optimizer in optimizers.items():
            _, seconds = timed(optimizer.step)
            if round_index:  # the first round allocates the optimizers' state
                times[key].append(seconds)
    return {
        name: {
            "fused_ms": round(1e3 * statistics.median(times[name, True]), 2),
            "loop_ms": round(1e3 * statistics.median(times[name, False]), 2),
        }
        for name in ("AdamW", "SGD")
    }


def random_batches(batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """One fixed uint8 batch, served forever: the step's cost does not depend on the pixels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, IMG_SIZE, IMG_SIZE), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (batch_size,), generator=generator)
    while True:
        yield images, labels


def run(args: argparse.Namespace) -> dict[str, Any]:
    batch_size, steps = (8, 2) if args.quick else (args.batch_size, args.steps)
    trainee = Trainee(MODEL_NAME, IMG_SIZE, random_batches(batch_size))
    images, _ = next(trainee.batches)
    flops = flops_by_kind(trainee.model, images)
    counted = training_flops_per_image(trainee.model, images)
    if abs(sum(flops.values()) - counted) > 0.01 * counted:
        raise SystemExit(f"the hooks count {sum(flops.values()):.4g} FLOPs per image, FlopCounterMode {counted:.4g}")
    trainee.steps(3)  # warm-up: oneDNN picks its kernels, the allocator settles
    matmul = matmul_gflops(args.matmul_size)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as profile:
        images_per_s = trainee.steps(steps)
    seconds: dict[str, float] = defaultdict(float)
    for event in profile.events():
        seconds[kind_of(event)] += event.self_cpu_time_total / 1e6 / steps
    if not (seconds[DENSE] and seconds[DEPTHWISE]):  # the convolutions ran under other op names: fix kind_of
        raise SystemExit(f"no time found for the convolutions; the profiled kinds: {dict(seconds)}")
    step_s = sum(seconds.values())
    kinds = sorted(seconds, key=seconds.get, reverse=True)
    per_kind = {}
    for kind in kinds:
        gflops = flops.get(kind, 0.0) * batch_size / seconds[kind] / 1e9 if seconds[kind] else 0.0
        per_kind[kind] = {
            "ms_per_step": round(seconds[kind] * 1e3, 2),
            "share_of_step_time": round(seconds[kind] / step_s, 4),
            "share_of_flops": round(flops.get(kind, 0.0) / counted, 4),
            "gflops": round(gflops, 1),
            "share_of_matmul": round(gflops / matmul, 4),
        }
    whole_gflops = counted * batch_size / step_s / 1e9
    optimizer_ms = optimizer_step_ms(trainee.model, rounds=3 if args.quick else 20)
    metrics = {
        "optimizer_step_ms": optimizer_ms,
        "fused_optimizer_speedup": {name: ratio(ms["loop_ms"], ms["fused_ms"]) for name, ms in optimizer_ms.items()},
        "matmul_peak_gflops": round(matmul, 1),
        "step_gflops": round(whole_gflops, 1),
        "step_share_of_matmul": round(whole_gflops / matmul, 4),
        # the step's FLOPs over the time of the dense convolutions and linear layers alone: the share the step
        # would reach if depthwise convolutions, batch norm, activations and the rest took no time at all
        "ceiling_share_of_matmul": round(counted * batch_size / (seconds[DENSE] + seconds[LINEAR]) / 1e9 / matmul, 4),
        "kinds": per_kind,
    }
    log(f"{images_per_s:.0f} img/s under the profiler; {whole_gflops:.1f} GFLOP/s of {matmul:.0f}")
    for kind, row in per_kind.items():
        log(f"{kind:36} {row['share_of_step_time']:6.1%} of the time, {row['share_of_flops']:6.1%} of the FLOPs, "
            f"{row['gflops']:6.1f} GFLOP/s ({row['share_of_matmul']:.1%} of matmul)")
    details = {"model": MODEL_NAME, "img_size": IMG_SIZE, "batch_size": batch_size, "steps": steps,
               "channels_last": trainee.channels_last, "precision": "fp32", "label_smooth": LABEL_SMOOTH,
               "images_per_s_under_profiler": round(images_per_s, 1), "flops_per_image": counted}
    return {"metrics": metrics, "details": details}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps (after 3 warm-up steps)")
    parser.add_argument("--matmul-size", type=int, default=1024, help="n of the n x n fp32 matmul peak")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    apply_threads(args)
    quiet_libraries()
    guard = start_quiet(args)
    return finish("ops", args, run(args), guard)


if __name__ == "__main__":
    main()
