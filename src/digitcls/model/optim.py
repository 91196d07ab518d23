"""Optimizers by name and learning-rate schedules from the tutorial's one-string grammar.

Grammar of ``scheduler`` (whole-string matches; the first word is case-insensitive):

================== ======================= ================================================================
form               example                 meaning
================== ======================= ================================================================
default-F-P        default-0.1-3           ReduceLROnPlateau on ``val_acc``: lr *= F after P epochs without
                                           improvement (0 < F < 1, P >= 0)
step-S-G           step-10-0.5             StepLR: lr *= G every S epochs (S >= 1, 0 < G <= 1, G a float)
SGDR-T0-TMULT      SGDR-5-2                cosine annealing with warm restarts: first cycle T0 epochs, each
                                           next one TMULT times longer (integers >= 1)
multi-M1,M2,...-G  multi-10,20-0.1         MultiStepLR: lr *= G at epochs M1 < M2 < ...; ``multi-10_20-0.1``
                                           is the same (Hydra reads a bare comma as a sweep separator, so
                                           write ``_`` or quote: ``'scheduler="multi-10,20-0.1"'``)
cosine             cosine                  CosineAnnealingLR from learning_rate to 0 over the epochs
onecycle           onecycle                OneCycleLR stepped per batch, peak lr = learning_rate
none               none                    constant learning_rate
================== ======================= ================================================================

``warmup_epoch = W > 0`` ramps the lr linearly, batch by batch, from ``learning_rate / 10`` to
``learning_rate`` over the first W epochs, for every form. The main schedule then starts its own clock at
epoch W (``step-10`` first decays at epoch W + 10, ``cosine`` spans the remaining epochs, the plateau
patience starts counting after the warm-up). For ``onecycle`` the warm-up is its own rising phase:
pct_start = W / epochs, from learning_rate / 10 (cosine-shaped: its middle is the mean of both ends too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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

from digitcls.errors import ConfigError

# --------------------------------------------------------------------------------------------- optimizers

_OPTIMIZERS: dict[str, Callable[[Iterable, float, float], Optimizer]] = {
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd: torch.optim.SGD(
        params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True
    ),
    "adabelief": lambda params, lr, wd: AdaBelief(params, lr=lr, weight_decay=wd),
    "ranger": lambda params, lr, wd: Ranger(params, lr=lr, weight_decay=wd),
}
OPTIMIZER_NAMES: tuple[str, ...] = ("Adam", "AdamW", "SGD", "AdaBelief", "Ranger")


def build_optimizer(name: str, params: Iterable, lr: float, weight_decay: float) -> Optimizer:
    """``name`` is matched case-insensitively but whole (``adamw``, ``AdamW``; never ``adam`` for ``adamw``).

    SGD uses Nesterov momentum 0.9; AdaBelief and Ranger come from ``pytorch_optimizer``. The arguments are
    trusted: :mod:`digitcls.schema` checked them.
    """
    return _OPTIMIZERS[name.lower()](params, float(lr), float(weight_decay))


# ------------------------------------------------------------------------------------ scheduler grammar

PLATEAU_MONITOR = "val_acc"
WARMUP_START_FACTOR = 0.1  # the warm-up starts at learning_rate / 10

# (form, example, meaning): the single source for error messages and docs
SCHEDULER_FORMS: tuple[tuple[str, str, str], ...] = (
    (
        "default-F-P",
        "default-0.1-3",
        "ReduceLROnPlateau on val_acc, lr *= F (0<F<1) after P epochs (P>=0) flat",
    ),
    ("step-S-G", "step-10-0.5", "StepLR, lr *= G (0<G<=1) every S epochs (S>=1)"),
    (
        "SGDR-T0-TMULT",
        "SGDR-5-2",
        "cosine warm restarts, first cycle T0 epochs, each next TMULT times longer",
    ),
    ("multi-M1,M2,...-G", "multi-10,20-0.1 or multi-10_20-0.1", "MultiStepLR, lr *= G at epochs M1<M2<..."),
    ("cosine", "cosine", "cosine annealing to 0 over the epochs"),
    ("onecycle", "onecycle", "OneCycleLR per batch, peak = learning_rate"),
    ("none", "none", "constant learning_rate"),
)

_INT = r"(\d+)"
_FLOAT = r"(\d+(?:\.\d*)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
_GRAMMAR: dict[str, re.Pattern[str]] = {
    kind: re.compile(pattern, re.IGNORECASE | re.ASCII)
    for kind, pattern in {
        "default": rf"default-{_FLOAT}-{_INT}",
        "step": rf"step-{_INT}-{_FLOAT}",
        "sgdr": rf"sgdr-{_INT}-{_INT}",
        "multi": rf"multi-(\d+(?:[,_]\d+)*)-{_FLOAT}",
        "cosine": "cosine",
        "onecycle": "onecycle",
        "none": "none",
    }.items()
}
SCHEDULER_KINDS: tuple[str, ...] = tuple(_GRAMMAR)


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``scheduler`` string. ``kind`` is one of :data:`SCHEDULER_KINDS` (lower case); ``params``:

    default: factor, patience · step: step_size, gamma · sgdr: T_0, T_mult · multi: milestones, gamma.
    """

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


def _invalid(spec: object, reason: str = "") -> ConfigError:
    forms = "; ".join(f"{form} (e.g. {example}): {meaning}" for form, example, meaning in SCHEDULER_FORMS)
    return ConfigError(
        f"scheduler: {spec!r} is not a valid schedule{f' ({reason})' if reason else ''}. Valid forms, "
        f"first word case-insensitive: {forms}. In a Hydra sweep write multi-10_20-0.1 or quote the "
        "comma: 'scheduler=\"multi-10,20-0.1\"'."
    )


def parse_scheduler(spec: str) -> SchedulerSpec:
    """Parse the ``scheduler`` string; anything but a whole valid form raises :class:`ConfigError`."""
    if not isinstance(spec, str):
        raise _invalid(spec)
    found = next(((kind, m) for kind, pattern in _GRAMMAR.items() if (m := pattern.fullmatch(spec))), None)
    if found is None:
        raise _invalid(spec)
    kind, match = found

    groups = match.groups()
    if kind == "default":
        factor, patience = float(groups[0]), int(groups[1])
        if not 0 < factor < 1:
            raise _invalid(spec, f"the factor F must be in (0, 1), got {factor}")
        return SchedulerSpec(kind, {"factor": factor, "patience": patience})
    if kind == "step":
        step_size, gamma = int(groups[0]), float(groups[1])
        if step_size < 1:
            raise _invalid(spec, "the step S must be >= 1 epoch")
        if not 0 < gamma <= 1:
            raise _invalid(spec, f"gamma G must be in (0, 1], got {gamma}")
        return SchedulerSpec(kind, {"step_size": step_size, "gamma": gamma})
    if kind == "sgdr":
        t_0, t_mult = int(groups[0]), int(groups[1])
        if t_0 < 1 or t_mult < 1:
            raise _invalid(spec, f"T0 and TMULT must be integers >= 1, got T0={t_0}, TMULT={t_mult}")
        return SchedulerSpec(kind, {"T_0": t_0, "T_mult": t_mult})
    if kind == "multi":
        milestones, gamma = tuple(int(m) for m in re.split("[,_]", groups[0])), float(groups[1])
        if milestones[0] < 1 or any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise _invalid(
                spec, f"milestones must be strictly increasing epochs >= 1, got {list(milestones)}"
            )
        if not 0 < gamma <= 1:
            raise _invalid(spec, f"gamma G must be in (0, 1], got {gamma}")
        return SchedulerSpec(kind, {"milestones": milestones, "gamma": gamma})
    return SchedulerSpec(kind)


# ------------------------------------------------------------------------------------- schedulers


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
        config["monitor"] = PLATEAU_MONITOR
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

    ``epochs`` is the planned number of epochs (used by ``cosine``, ``onecycle`` and the checks);
    ``steps_per_epoch`` the optimizer steps per epoch (the warm-up and ``onecycle`` step per batch).

    With ``warmup_epoch = W``: a per-step ``LinearLR`` from ``learning_rate / 10`` to ``learning_rate``
    over ``W * steps_per_epoch`` steps (it leaves the lr alone afterwards), and the main schedule, stepped
    per epoch, starts its clock at epoch W (a ``ConstantLR(factor=1)`` holds it until then).
    """
    if isinstance(spec, str):
        spec = parse_scheduler(spec)
    if isinstance(warmup_epoch, bool) or not isinstance(warmup_epoch, int) or warmup_epoch < 0:
        raise ConfigError(
            f"warmup_epoch: must be an integer >= 0, got {warmup_epoch!r}; e.g. warmup_epoch=1."
        )
    if warmup_epoch and epochs > 0 and warmup_epoch >= epochs:
        raise ConfigError(
            f"warmup_epoch: {warmup_epoch} leaves no epoch after the warm-up (epochs={epochs}); "
            "use fewer warm-up epochs or more epochs."
        )
    if spec.kind in ("cosine", "onecycle") and epochs < 1:
        raise ConfigError(
            f"scheduler: {spec.kind} needs a finite number of epochs, got epochs={epochs}; set epochs."
        )
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


def _nested(scheduler: object) -> Iterator[object]:
    yield scheduler
    for child in getattr(scheduler, "_schedulers", ()):  # SequentialLR / ChainedScheduler
        yield from _nested(child)


# keys schedulers store in a param group (OneCycleLR: all of them; the others: initial_lr)
_SCHEDULE_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


def adopt_new_param_groups(scheduler: object) -> None:
    """Make ``scheduler`` drive param groups added to its optimizer after it was built (the freeze
    callback adds the backbone's), on the same schedule as the first group.

    Without this, closed-form schedulers (SGDR, the warm-up's hand-over, OneCycleLR) fail on the
    new group: torch zips learning rates with param groups strictly, and OneCycleLR reads
    ``max_lr``/``min_lr`` from every group.
    """
    groups = scheduler.optimizer.param_groups  # type: ignore[attr-defined]
    for group in groups[1:]:
        for key in _SCHEDULE_KEYS:
            if key in groups[0]:
                group.setdefault(key, groups[0][key])
    for child in _nested(scheduler):
        base_lrs = getattr(child, "base_lrs", None)
        if base_lrs:
            base_lrs.extend([base_lrs[0]] * (len(groups) - len(base_lrs)))
