"""Optimizers by name and learning-rate schedules from the tutorial's one-string grammar.

The grammar lives in :data:`digitcls.choices.SCHEDULER_FORMS` (the schema checks it without torch);
``python -m digitcls.model.optim`` prints docs/configuration.md's table of it. ``warmup_epoch``, as that page
describes, is a per-batch ramp from ``learning_rate / 10`` built here for every form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, SupportsFloat

import torch
from pytorch_optimizer import AdaBelief, Ranger
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

from digitcls.choices import SchedulerSpec, parse_scheduler, scheduler_table
from digitcls.private_apis import nested_schedulers

# name -> (class, its arguments besides lr and weight_decay); AdaBelief and Ranger from pytorch_optimizer.
# fused=True: torch's one-kernel update, on CPU and GPU. Without it torch's CPU default loops over the weight
# tensors a few ops at a time, several times slower (bench/bench_ops.py measures both; docs/benchmarks.md).
OPTIMIZERS: dict[str, tuple[type[Optimizer], dict[str, Any]]] = {
    "Adam": (torch.optim.Adam, {"fused": True}),
    "AdamW": (torch.optim.AdamW, {"fused": True}),
    "SGD": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "fused": True}),
    "AdaBelief": (AdaBelief, {}),
    "Ranger": (Ranger, {}),
}
_BY_FOLDED_NAME = {name.lower(): entry for name, entry in OPTIMIZERS.items()}


def build_optimizer(name: str, params: Iterable, lr: float, weight_decay: float, fused: bool = True) -> Optimizer:
    """``name`` is matched case-insensitively but whole (``adamw``, ``AdamW``; never ``adam`` for ``adamw``).
    The arguments are trusted: :mod:`digitcls.schema` checked them. ``fused=False``: torch's per-tensor update."""
    cls, defaults = _BY_FOLDED_NAME[name.lower()]
    if "fused" in defaults:
        defaults = {**defaults, "fused": fused}
    return cls(params, lr=float(lr), weight_decay=float(weight_decay), **defaults)


WARMUP_START_FACTOR = 0.1  # the warm-up starts at learning_rate / 10


class PlateauAfterWarmup(ReduceLROnPlateau):
    """ReduceLROnPlateau that lets the first ``warmup_epoch`` epochs pass (the warm-up drives the lr then),
    so its patience counts from the first epoch after the warm-up.

    Being a ReduceLROnPlateau, Lightning still passes it the monitored value every epoch; ``warmup_done``
    is in its state dict, so a resumed run knows where the warm-up stood.
    """

    def __init__(self, optimizer: Optimizer, warmup_epoch: int, **plateau_kwargs: Any) -> None:
        super().__init__(optimizer, **plateau_kwargs)
        self.warmup_epoch = warmup_epoch
        self.warmup_done = 0  # warm-up epochs completed

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        if self.warmup_done < self.warmup_epoch:
            self.warmup_done += 1
        else:
            super().step(metrics, epoch)


def _per_epoch(scheduler: LRScheduler | ReduceLROnPlateau) -> dict[str, Any]:
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch", "frequency": 1}
    if isinstance(scheduler, ReduceLROnPlateau):
        config["monitor"] = "val_acc"
    return config


def build_scheduler(
    spec: SchedulerSpec | str,
    optimizer: Optimizer,
    *,
    warmup_epoch: int,
    epochs: int,
    steps_per_epoch: int,
) -> list[dict[str, Any]]:
    """Lightning's ``lr_scheduler`` configs for ``spec`` (none for ``none`` without warm-up).

    ``epochs`` is the planned number of epochs (used by ``cosine`` and ``onecycle``); ``steps_per_epoch`` the
    optimizer steps per epoch (the warm-up and ``onecycle`` step per batch). The arguments are trusted:
    :mod:`digitcls.schema` checked them. The warm-up is a per-step ``LinearLR``; a ``ConstantLR(factor=1)``
    holds the main schedule until it ends.
    """
    if isinstance(spec, str):
        spec = parse_scheduler(spec)
    p = spec.params
    steps_per_epoch = max(1, steps_per_epoch)

    if spec.kind == "onecycle":  # its rising phase is the warm-up: from lr/10 (cosine-shaped) over W epochs
        scheduler = OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=warmup_epoch / epochs if warmup_epoch else 0.3,
            div_factor=1 / WARMUP_START_FACTOR if warmup_epoch else 25.0,
        )
        return [{"scheduler": scheduler, "interval": "step", "frequency": 1}]

    main: LRScheduler | ReduceLROnPlateau | None = None
    if spec.kind == "default":
        plateau = {"mode": "max", "factor": p["factor"], "patience": p["patience"]}
        main = (
            PlateauAfterWarmup(optimizer, warmup_epoch, **plateau)
            if warmup_epoch
            else ReduceLROnPlateau(optimizer, **plateau)
        )
    elif spec.kind == "step":
        main = StepLR(optimizer, step_size=p["step_size"], gamma=p["gamma"])
    elif spec.kind == "multi":
        main = MultiStepLR(optimizer, milestones=list(p["milestones"]), gamma=p["gamma"])
    elif spec.kind == "sgdr":
        main = CosineAnnealingWarmRestarts(optimizer, T_0=p["T_0"], T_mult=p["T_mult"])
    elif spec.kind == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=epochs - warmup_epoch)

    if not warmup_epoch:
        return [_per_epoch(main)] if main is not None else []
    configs = []
    if isinstance(main, ReduceLROnPlateau):  # (an LRScheduler too) waits for the warm-up by itself
        configs.append(_per_epoch(main))
    elif main is not None:  # hold the main schedule at learning_rate until the warm-up ends
        hold = ConstantLR(optimizer, factor=1.0, total_iters=warmup_epoch)
        configs.append(_per_epoch(SequentialLR(optimizer, [hold, main], milestones=[warmup_epoch])))
    # built last: its first step scales the lr the schedules above left at learning_rate down to lr/10
    warmup = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup_epoch * steps_per_epoch)
    return [{"scheduler": warmup, "interval": "step", "frequency": 1}, *configs]


def adopt_new_param_groups(scheduler: object) -> None:
    """Make ``scheduler`` drive param groups added to its optimizer after it was built (the freeze
    callback adds the backbone's), on the same schedule as the first group.

    Without this, closed-form schedulers (SGDR, the warm-up's hand-over, OneCycleLR) fail on the
    new group: torch zips learning rates with param groups strictly, and OneCycleLR reads
    ``max_lr``/``min_lr`` from every group.
    """
    groups = scheduler.optimizer.param_groups  # type: ignore[attr-defined]
    for group in groups[1:]:
        # keys schedulers store in a param group (OneCycleLR: all of them; the others: initial_lr)
        for key in ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum"):
            if key in groups[0]:
                group.setdefault(key, groups[0][key])
    for child in nested_schedulers(scheduler):
        base_lrs = getattr(child, "base_lrs", None)
        if base_lrs:
            base_lrs.extend([base_lrs[0]] * (len(groups) - len(base_lrs)))


if __name__ == "__main__":  # regenerate docs/configuration.md's table
    print(scheduler_table())
