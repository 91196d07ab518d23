"""Which accelerator, how many processes, which strategy and precision a run uses: decided once, here.

:func:`plan_devices` is pure (the machine is passed in), so every case is tested without the hardware;
:func:`plan_for_this_machine` feeds it what this process sees. The rules:

* one process on one device unless the user asks for more: an explicit ``trainer.devices`` (``4``, ``-1``,
  ``auto``, ``[0, 1]``) or ``trainer=ddp``. ``auto``/``-1`` mean every visible GPU (one process on CPU).
* several processes started by Lightning re-running the command line (``ddp``, or ``auto`` which Lightning
  turns into ``ddp``) inside a local Hydra multirun would re-run the whole sweep in every rank: such runs use
  ``ddp_spawn``, which starts the ranks without re-running anything. Ranks started by a cluster (SLURM tasks,
  torchrun) re-run nothing and keep ``ddp``. Strategies that cannot be spawned are refused with the fix.
* precision follows the accelerator actually used: ``32-true`` on CPU, ``bf16-mixed`` on GPUs that support
  it, else ``16-mixed``; an explicit ``trainer.precision`` always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from digitcls.cli import in_multirun
from digitcls.errors import ConfigError

GPU_NAMES = ("gpu", "cuda")
# strategies whose ranks Lightning starts by re-running the command line (its subprocess launcher)
RELAUNCHING = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


@dataclass(frozen=True)
class DevicePlan:
    """What goes to ``lightning.Trainer``; ``note`` explains a change the user did not spell out."""

    accelerator: str
    devices: int | str | list[int]
    strategy: str
    precision: str | int
    processes: int  # on this node
    note: str | None = None


def _device_count(devices: Any, accelerator: str, visible_gpus: int) -> int:
    """How many processes Lightning starts on this node for ``devices``."""
    if devices in ("auto", -1, "-1"):
        return max(visible_gpus, 1) if accelerator == "gpu" else 1
    if isinstance(devices, int) and not isinstance(devices, bool):
        count = devices
    elif isinstance(devices, str) and devices.strip().isdigit():
        count = int(devices)
    elif isinstance(devices, str):  # "0,1": GPU ids
        count = len([part for part in devices.split(",") if part.strip()])
    elif isinstance(devices, (list, tuple)):
        count = len(devices)
    else:
        raise ConfigError(f"trainer.devices: expected a count, a list of GPU ids or auto, got {devices!r}.")
    if count < 1:
        raise ConfigError(f"trainer.devices: must be >= 1, -1 or auto, got {devices!r}; e.g. trainer.devices=1.")
    if accelerator == "gpu" and count > visible_gpus:
        raise ConfigError(
            f"trainer.devices={devices!r} asks for {count} GPUs but {visible_gpus} are visible; "
            f"use trainer.devices={max(visible_gpus, 1)} or trainer.accelerator=cpu."
        )
    return count


def plan_devices(
    trainer: Mapping[str, Any],
    visible_gpus: int,
    multirun: bool,
    cluster: bool,
    bf16_supported: bool = False,
) -> DevicePlan:
    """Resolve ``trainer.accelerator/devices/strategy/precision`` for a machine with ``visible_gpus`` GPUs.

    Args:
        trainer: the ``trainer`` config (only those four keys and ``num_nodes`` are read).
        visible_gpus: CUDA devices this process sees.
        multirun: inside a Hydra multirun launched on this machine.
        cluster: ranks are started by a cluster (SLURM, torchrun), not by Lightning.
        bf16_supported: the GPU computes in bfloat16 (Ampere or newer).

    Raises:
        ConfigError: a GPU asked for where none is visible, more GPUs than visible, a strategy that would
            re-run a local sweep and cannot be spawned.
    """
    requested = str(trainer.get("accelerator") or "auto").lower()
    if requested == "auto":
        accelerator = "gpu" if visible_gpus > 0 else "cpu"
    elif requested in GPU_NAMES:
        if visible_gpus == 0:
            raise ConfigError(
                f"trainer.accelerator={requested}: no CUDA GPU is visible to this process; "
                "use trainer.accelerator=cpu (or auto)."
            )
        accelerator = "gpu"
    else:
        accelerator = requested  # cpu, mps, ...: Lightning checks the rest
    devices = trainer.get("devices", 1)
    processes = _device_count(devices, accelerator, visible_gpus)
    world = processes * int(trainer.get("num_nodes") or 1)

    strategy = str(trainer.get("strategy") or "auto")
    note = None
    relaunching = strategy in RELAUNCHING or (strategy == "auto" and world > 1)
    if relaunching and world > 1 and multirun and not cluster:
        spawned = strategy.replace("ddp", "ddp_spawn", 1) if strategy != "auto" else "ddp_spawn"
        note = (
            f"trainer.strategy={strategy} with {world} processes in a local multirun: using {spawned}, "
            "as Lightning's ddp would re-run the whole sweep in every rank"
        )
        strategy = spawned
    elif world > 1 and multirun and not cluster and strategy.split("_")[0] in ("fsdp", "deepspeed"):
        raise ConfigError(
            f"trainer.strategy={strategy}: its ranks re-run the command line, which in a local multirun is the "
            "whole sweep. Use trainer=ddp_spawn in sweeps, run this config as a single run, or launch the sweep "
            "on a cluster (+launcher=slurm)."
        )

    precision = trainer.get("precision")
    if precision is None:  # mixed precision only where it is fast: on CPU bf16 runs at ~1/3 of fp32 (bench/)
        gpu_precision = "bf16-mixed" if bf16_supported else "16-mixed"
        precision = gpu_precision if accelerator == "gpu" else "32-true"
    if devices in ("auto", -1, "-1") and accelerator in ("cpu", "gpu"):
        devices = processes  # Lightning's CPU accelerator refuses -1; a count says what was chosen
    return DevicePlan(accelerator, devices, strategy, precision, processes, note)


def started_by_cluster() -> bool:
    """Ranks started by SLURM tasks or torchrun (Lightning's own children also carry LOCAL_RANK)."""
    return SLURMEnvironment.detect() or TorchElasticEnvironment.detect() or "LOCAL_RANK" in os.environ


def plan_for_this_machine(trainer: Mapping[str, Any]) -> DevicePlan:
    gpus = torch.cuda.device_count()
    return plan_devices(
        trainer,
        visible_gpus=gpus,
        multirun=in_multirun(),
        cluster=started_by_cluster(),
        bf16_supported=gpus > 0 and torch.cuda.is_bf16_supported(),
    )
