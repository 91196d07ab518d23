"""What digitcls adds to the Trainer's own device choice. Lightning resolves ``accelerator/devices/strategy="auto"``
itself (``conf/trainer/default.yaml`` asks for one device); two rules depend on what it cannot know:

* inside a local Hydra multirun, Lightning's ddp starts its ranks by re-running the command line, which is the
  whole sweep: there several processes use ddp_spawn, and strategies that cannot be spawned are refused with the fix.
  Ranks started by a cluster (SLURM tasks, torchrun) re-run nothing and keep ddp.
* ``precision: null`` is the fast precision of the accelerator used (Lightning's default is 32-true everywhere):
  32-true on CPU (bf16 runs at ~1/3 of fp32 there, bench/), bf16-mixed on GPUs that have it, else 16-mixed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from digitcls.cli import in_multirun
from digitcls.errors import ConfigError

# strategies whose ranks Lightning starts by re-running the command line (its subprocess launcher)
RELAUNCHING = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")
EVERY_DEVICE = ("auto", -1, "-1")


def plan_devices(
    trainer: Mapping[str, Any], visible_gpus: int, multirun: bool, cluster: bool, bf16_supported: bool = False
) -> tuple[dict[str, Any], str | None]:
    """The Trainer arguments from the ``trainer`` config on a machine with ``visible_gpus`` GPUs, and a note saying
    what was changed that the user did not spell out (None when nothing was).

    Raises:
        ConfigError: a strategy that would re-run a local sweep and cannot be spawned.
    """
    kwargs = dict(trainer)
    requested = str(kwargs.get("accelerator") or "auto").lower()
    on_gpu = requested in ("gpu", "cuda") or (requested == "auto" and visible_gpus > 0)
    if kwargs.get("precision") is None:
        kwargs["precision"] = ("bf16-mixed" if bf16_supported else "16-mixed") if on_gpu else "32-true"
    devices = kwargs.get("devices", 1)
    if devices in EVERY_DEVICE and not on_gpu:
        kwargs["devices"] = 1  # Lightning's CPU accelerator refuses -1; every device of a CPU is one process
    several = _processes(devices, on_gpu, visible_gpus) * int(kwargs.get("num_nodes") or 1) > 1
    strategy = str(kwargs.get("strategy") or "auto")
    if not (several and multirun and not cluster):
        return kwargs, None
    if strategy in RELAUNCHING or strategy == "auto":
        kwargs["strategy"] = strategy.replace("ddp", "ddp_spawn", 1) if strategy != "auto" else "ddp_spawn"
        return kwargs, (f"trainer.strategy={strategy} with several processes in a local multirun: using "
                        f"{kwargs['strategy']}, as Lightning's ddp would re-run the whole sweep in every rank")
    if strategy.split("_")[0] in ("fsdp", "deepspeed"):
        raise ConfigError(
            f"trainer.strategy={strategy}: its ranks re-run the command line, which in a local multirun is the "
            "whole sweep. Use trainer=ddp_spawn in sweeps, run this config as a single run, or launch the sweep "
            "on a cluster (+launcher=slurm)."
        )
    return kwargs, None


def _processes(devices: Any, on_gpu: bool, visible_gpus: int) -> int:
    """How many processes Lightning starts on this node for ``devices`` (it checks the values itself)."""
    if devices in EVERY_DEVICE:
        return visible_gpus if on_gpu else 1
    if isinstance(devices, list | tuple):
        return len(devices)
    text = str(devices)
    return len([part for part in text.split(",") if part.strip()]) if "," in text else int(text) if text.isdigit() else 1


def plan_for_this_machine(trainer: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    gpus = torch.cuda.device_count()
    # ranks started by SLURM tasks or torchrun (Lightning's own children also carry LOCAL_RANK)
    cluster = SLURMEnvironment.detect() or TorchElasticEnvironment.detect() or "LOCAL_RANK" in os.environ
    return plan_devices(trainer, gpus, in_multirun(), cluster, gpus > 0 and torch.cuda.is_bf16_supported())
