"""The device decision (digitcls.devices): for 0, 1 and many visible GPUs and every accelerator/strategy
spelling. GPU counts are passed in (no GPU here); one check builds a real Trainer on CPU."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
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
    ("gpus", "bf16", "expected"),
    [
        (0, False, ("cpu", 1, "auto", "32-true")),
        (1, False, ("gpu", 1, "auto", "16-mixed")),
        (1, True, ("gpu", 1, "auto", "bf16-mixed")),
        (8, True, ("gpu", 1, "auto", "bf16-mixed")),  # many GPUs: still one process on one device
    ],
)
def test_defaults_use_one_device_and_its_precision(gpus: int, bf16: bool, expected: tuple) -> None:
    p = plan(gpus, bf16=bf16)
    assert (p.accelerator, p.devices, p.strategy, p.precision) == expected
    assert p.processes == 1 and p.note is None


@pytest.mark.parametrize("gpus", [0, 1, 4])
@pytest.mark.parametrize("multirun", [False, True])
def test_cpu_is_fp32_even_where_cuda_is_visible(gpus: int, multirun: bool) -> None:
    p = plan(gpus, multirun=multirun, accelerator="cpu")
    assert (p.accelerator, p.devices, p.strategy, p.precision) == ("cpu", 1, "auto", "32-true")


@pytest.mark.parametrize("spelling", ["gpu", "cuda", "GPU"])
def test_gpu_spellings(spelling: str) -> None:
    assert plan(2, accelerator=spelling).accelerator == "gpu"


def test_explicit_precision_wins() -> None:
    assert plan(0, precision="bf16-mixed").precision == "bf16-mixed"
    assert plan(2, precision="32-true").precision == "32-true"
    assert plan(2, accelerator="cpu", precision=16).precision == 16


@pytest.mark.parametrize(
    ("devices", "gpus", "processes"),
    [("auto", 4, 4), (-1, 4, 4), ("-1", 4, 4), (3, 4, 3), ("2", 4, 2), ([0, 2], 4, 2), ("0,1", 4, 2),
     ("auto", 0, 1), (-1, 0, 1), (2, 0, 2)],
)  # fmt: skip
def test_device_counts(devices, gpus: int, processes: int) -> None:
    p = plan(gpus, devices=devices)
    assert p.processes == processes
    if devices in ("auto", -1, "-1"):
        assert p.devices == processes  # resolved, so Lightning's CPU accelerator never sees -1


@pytest.mark.parametrize(
    ("trainer", "strategy"),
    [
        ({"strategy": "ddp", "devices": 2}, "ddp_spawn"),
        ({"strategy": "auto", "devices": "auto"}, "ddp_spawn"),
        ({"strategy": "auto", "devices": -1}, "ddp_spawn"),
        ({"strategy": "ddp_find_unused_parameters_true", "devices": 4}, "ddp_spawn_find_unused_parameters_true"),
        ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, "ddp_spawn"),
        ({"strategy": "ddp_spawn", "devices": 4}, "ddp_spawn"),
        ({"strategy": "ddp", "devices": 1}, "ddp"),  # one process: nothing is re-run
        ({"strategy": "auto", "devices": 1}, "auto"),
    ],
)
def test_relaunching_ddp_in_a_local_multirun_becomes_ddp_spawn(trainer: dict, strategy: str) -> None:
    p = plan(4, multirun=True, **trainer)
    assert p.strategy == strategy
    assert (p.note is not None) == (strategy != trainer["strategy"])
    if p.note:
        assert "ddp_spawn" in p.note and "re-run the whole sweep" in p.note


@pytest.mark.parametrize("strategy", ["ddp", "auto"])
def test_ddp_is_kept_outside_sweeps_and_on_clusters(strategy: str) -> None:
    assert plan(4, devices=4, strategy=strategy).strategy == strategy  # single run: Lightning relaunches
    assert plan(4, multirun=True, cluster=True, devices=4, strategy=strategy).strategy == strategy
    assert plan(0, multirun=True, accelerator="cpu", devices=2, strategy="ddp").strategy == "ddp_spawn"


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed_stage_2"])
def test_strategies_that_cannot_be_spawned_are_refused_in_a_local_multirun(strategy: str) -> None:
    with pytest.raises(ConfigError, match=rf"trainer.strategy={strategy}: .*trainer=ddp_spawn"):
        plan(4, multirun=True, devices=4, strategy=strategy)
    assert plan(4, devices=4, strategy=strategy).strategy == strategy  # a single run may use them


@pytest.mark.parametrize(
    ("trainer", "gpus", "message"),
    [
        ({"accelerator": "gpu"}, 0, r"trainer.accelerator=gpu: no CUDA GPU is visible.*trainer.accelerator=cpu"),
        ({"accelerator": "cuda"}, 0, r"trainer.accelerator=cuda: no CUDA GPU"),
        ({"devices": 8}, 2, r"trainer.devices=8 asks for 8 GPUs but 2 are visible; use trainer.devices=2"),
        ({"devices": [0, 1, 2]}, 2, r"asks for 3 GPUs but 2 are visible"),
        ({"devices": 0}, 1, r"trainer.devices: must be >= 1, -1 or auto, got 0"),
        ({"devices": True}, 1, r"trainer.devices: expected a count, a list of GPU ids or auto, got True"),
    ],
)
def test_impossible_requests_name_the_key_and_the_fix(trainer: dict, gpus: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(gpus, **trainer)


def test_a_real_trainer_on_cpu_gets_the_plan(tmp_path: Path) -> None:
    cfg = compose_train(["trainer.accelerator=cpu", f"output_dir={tmp_path}"])
    trainer = build_trainer(cfg, tmp_path, callbacks=[])
    assert trainer.precision == "32-true"
    assert trainer.num_devices == 1 and isinstance(trainer.strategy, SingleDeviceStrategy)

    # what a 2-process CPU DDP inside a local sweep resolves to: spawned ranks, nothing re-run
    trainer_cfg = OmegaConf.to_container(compose_train(["trainer=ddp", "trainer.accelerator=cpu"]).trainer)
    p = plan_devices(trainer_cfg, visible_gpus=0, multirun=True, cluster=False)
    spawned = L.Trainer(accelerator=p.accelerator, devices=p.devices, strategy=p.strategy, precision=p.precision,
                        logger=False, default_root_dir=tmp_path)  # fmt: skip
    assert isinstance(spawned.strategy, DDPStrategy) and spawned.world_size == 2
    assert isinstance(spawned.strategy.launcher, _MultiProcessingLauncher)
    assert spawned.strategy.launcher._start_method == "spawn"
    assert spawned.precision == "32-true"
