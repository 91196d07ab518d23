"""bench/bench_ops.py: every profiled op lands in one kind, convolutions by their weight's shape.

The independent counts: a network whose dense and depthwise convolutions are known by construction, and
the FLOPs that ``torch.utils.flop_counter.FlopCounterMode`` counts for the same forward pass.
"""

from __future__ import annotations

from collections import Counter
from types import ModuleType

import pytest
import torch
from torch import nn

from tests.helpers import REPO


@pytest.fixture
def bench_ops(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import bench_ops

    return bench_ops


def three_convolutions() -> nn.Module:
    """A 3x3 dense stem, a 3x3 depthwise convolution, a 1x1 pointwise one, then a linear head."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 4, 1),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    ).to(memory_format=torch.channels_last)


@pytest.mark.parametrize("threads", [1, 2])
def test_convolutions_are_told_apart_by_their_weights_shape(bench_ops: ModuleType, threads: int) -> None:
    """Every op that runs inside a convolution, in whatever kernel torch picks (with one thread the 1 x 1
    convolution runs in ``_slow_conv2d_forward``, not oneDNN), counts for that convolution's kind."""
    model = three_convolutions()
    images = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as profile:
            model(images).sum().backward()
    finally:
        torch.set_num_threads(before)
    convolutions = Counter(
        bench_ops.kind_of(event) for event in profile.events()
        if event.name in ("aten::convolution", "aten::convolution_backward")
    )
    assert convolutions == {bench_ops.DENSE: 4, bench_ops.DEPTHWISE: 2}  # forward and backward of each
    kernels = [event for event in profile.events() if event.name.startswith(("aten::mkldnn_conv", "aten::_slow_conv"))]
    assert kernels and all(bench_ops.kind_of(event) in (bench_ops.DENSE, bench_ops.DEPTHWISE) for event in kernels)
    depthwise_time = sum(e.self_cpu_time_total for e in profile.events() if bench_ops.kind_of(e) == bench_ops.DEPTHWISE)
    assert depthwise_time > 0


def test_the_hooks_count_the_flops_that_flop_counter_mode_counts(bench_ops: ModuleType) -> None:
    model = three_convolutions()
    images = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    flops = bench_ops.flops_by_kind(model, images)
    # by hand, forward multiply-adds per image: stem 8*8*8 outputs x 3*3*3, depthwise 8*8*8 x 3*3,
    # pointwise 4*8*8 x 8, linear 10 x 256; training = 3 x 2 x multiply-adds
    assert flops[bench_ops.DENSE] == 6 * (512 * 27 + 256 * 8)
    assert flops[bench_ops.DEPTHWISE] == 6 * 512 * 9
    assert flops[bench_ops.LINEAR] == 6 * 2560
    counter = torch.utils.flop_counter.FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    assert sum(flops.values()) == 3 * counter.get_total_flops() / len(images)


def test_a_quick_run_puts_all_of_the_steps_time_and_flops_in_its_kinds(bench_ops: ModuleType) -> None:
    result = bench_ops.run(bench_ops.parse_args(["--quick"]))
    kinds = result["metrics"]["kinds"]
    assert sum(row["share_of_step_time"] for row in kinds.values()) == pytest.approx(1, abs=0.002)
    assert sum(row["share_of_flops"] for row in kinds.values()) == pytest.approx(1, abs=0.002)
    assert {kind for kind, row in kinds.items() if row["share_of_flops"]} == {
        bench_ops.DENSE, bench_ops.DEPTHWISE, bench_ops.LINEAR
    }
    assert all(row["gflops"] > 0 for row in kinds.values() if row["share_of_flops"])
