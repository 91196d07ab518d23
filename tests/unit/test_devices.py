"""What digitcls adds to Lightning's own device choice (digitcls.devices): precision for the accelerator used, and
ddp_spawn instead of a relaunching ddp inside a local multirun. GPU counts are passed in (no GPU here); real
Trainers on CPU check what Lightning makes of the result."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from omegaconf import OmegaConf

from digitcls.devices import plan_devices
from digitcls.errors import ConfigError
from digitcls.train import build_trainer
from tests.helpers import compose_train

DEFAULT = {"accelerator": "auto", "devices": 1, "strategy": "auto", "num_nodes": 1, "precision": None}


def plan(gpus: int, multirun: bool = False, cluster: bool = False, bf16: bool = False, **trainer):
    return plan_devices({**DEFAULT, **trainer}, visible_gpus=gpus, multirun=multirun, cluster=cluster,
                        bf16_supported=bf16)  # fmt: skip


@pytest.mark.parametrize(
    ("gpus", "bf16", "trainer", "precision"),
    [
        (0, False, {}, "32-true"),
        (1, False, {}, "16-mixed"),
        (1, True, {}, "bf16-mixed"),
        (4, True, {"accelerator": "cpu"}, "32-true"),  # CPU is fp32 even where CUDA is visible
        (0, False, {"accelerator": "GPU"}, "16-mixed"),  # asked for: Lightning says there is none
        (2, True, {"precision": "32-true"}, "32-true"),  # an explicit precision wins
        (0, False, {"precision": "bf16-mixed"}, "bf16-mixed"),
    ],
)
def test_precision_follows_the_accelerator(gpus: int, bf16: bool, trainer: dict, precision: str) -> None:
    kwargs, note = plan(gpus, bf16=bf16, **trainer)
    assert kwargs["precision"] == precision and note is None
    assert kwargs["devices"] == 1 and kwargs["strategy"] == "auto"  # the rest is Lightning's


@pytest.mark.parametrize(
    ("trainer", "strategy"),
    [
        ({"strategy": "ddp", "devices": 2}, "ddp_spawn"),
        ({"strategy": "auto", "devices": "auto"}, "ddp_spawn"),
        ({"strategy": "auto", "devices": -1}, "ddp_spawn"),
        ({"strategy": "auto", "devices": "0,1"}, "ddp_spawn"),
        ({"strategy": "auto", "devices": [0, 2]}, "ddp_spawn"),
        ({"strategy": "ddp_find_unused_parameters_true", "devices": 4}, "ddp_spawn_find_unused_parameters_true"),
        ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, "ddp_spawn"),
        ({"strategy": "ddp_spawn", "devices": 4}, "ddp_spawn"),
        ({"strategy": "ddp", "devices": 1}, "ddp"),  # one process: nothing is re-run
        ({"strategy": "auto", "devices": "1"}, "auto"),
    ],
)
def test_relaunching_ddp_in_a_local_multirun_becomes_ddp_spawn(trainer: dict, strategy: str) -> None:
    kwargs, note = plan(4, multirun=True, **trainer)
    assert kwargs["strategy"] == strategy
    assert (note is not None) == (strategy != trainer["strategy"])
    if note:
        assert "ddp_spawn" in note and "re-run the whole sweep" in note


@pytest.mark.parametrize("strategy", ["ddp", "auto"])
def test_ddp_is_kept_outside_sweeps_and_on_clusters(strategy: str) -> None:
    assert plan(4, devices=4, strategy=strategy)[0]["strategy"] == strategy  # single run: Lightning relaunches
    assert plan(4, multirun=True, cluster=True, devices=4, strategy=strategy)[0]["strategy"] == strategy
    assert plan(0, multirun=True, accelerator="cpu", devices=2, strategy="ddp")[0]["strategy"] == "ddp_spawn"
    assert plan(4, multirun=True, accelerator="cpu", devices="auto")[0] == {**DEFAULT, "accelerator": "cpu",
                                                                           "precision": "32-true"}  # fmt: skip


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed_stage_2"])
def test_strategies_that_cannot_be_spawned_are_refused_in_a_local_multirun(strategy: str) -> None:
    with pytest.raises(ConfigError, match=rf"trainer.strategy={strategy}: .*trainer=ddp_spawn"):
        plan(4, multirun=True, devices=4, strategy=strategy)
    assert plan(4, devices=4, strategy=strategy)[0]["strategy"] == strategy  # a single run may use them


def test_a_real_trainer_on_cpu_gets_the_plan(tmp_path: Path) -> None:
    cfg = compose_train(["trainer.accelerator=cpu", "trainer.devices=-1", f"output_dir={tmp_path}"])
    trainer = build_trainer(cfg, tmp_path, callbacks=[])
    assert trainer.precision == "32-true"
    assert trainer.num_devices == 1 and isinstance(trainer.strategy, SingleDeviceStrategy)

    # what a 2-process CPU DDP inside a local sweep resolves to: spawned ranks, nothing re-run
    trainer_cfg = OmegaConf.to_container(compose_train(["trainer=ddp", "trainer.accelerator=cpu"]).trainer, resolve=True)
    kwargs, _ = plan_devices(trainer_cfg, visible_gpus=0, multirun=True, cluster=False)
    spawned = L.Trainer(**kwargs, logger=False, default_root_dir=tmp_path)
    assert isinstance(spawned.strategy, DDPStrategy) and spawned.world_size == 2
    assert isinstance(spawned.strategy.launcher, _MultiProcessingLauncher)
    assert spawned.strategy.launcher._start_method == "spawn"
    assert spawned.precision == "32-true"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_lightnings_refusal_is_a_config_error(tmp_path: Path) -> None:
    cfg = compose_train(["trainer.accelerator=gpu", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="trainer: No supported gpu backend found"):
        build_trainer(cfg, tmp_path, callbacks=[])
