import math
from pathlib import Path

import lightning as L
import pytest
import torch
from pytorch_optimizer import AdaBelief, Ranger
from torch import nn
from torch.optim.lr_scheduler import LinearLR, OneCycleLR, ReduceLROnPlateau, SequentialLR, StepLR

from digitcls.choices import SCHEDULER_FORMS, SchedulerSpec, parse_scheduler, scheduler_table
from digitcls.errors import ConfigError
from digitcls.model.module import DigitClassifier
from digitcls.model.optim import (
    OPTIMIZERS,
    PlateauAfterWarmup,
    adopt_new_param_groups,
    build_optimizer,
    build_scheduler,
)


def params() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(2))]


# ------------------------------------------------------------------------------------------ optimizers


@pytest.mark.parametrize(("name", "entry"), OPTIMIZERS.items())
def test_every_optimizer_builds_and_steps(name: str, entry: tuple[type, dict]) -> None:
    cls, defaults = entry
    weights = params()
    optimizer = build_optimizer(name, weights, lr=0.01, weight_decay=0.001)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 0.001
    assert all(group[key] == value for key, value in defaults.items())
    (weights[0] - 1).pow(2).sum().backward()
    optimizer.step()
    assert not torch.equal(weights[0].detach(), torch.zeros(2))  # the step moved the weights


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("ADAMW", torch.optim.AdamW),
                                           ("ranger", Ranger), ("adabelief", AdaBelief)])  # fmt: skip
def test_optimizer_names_are_case_insensitive(name: str, cls: type) -> None:
    assert type(build_optimizer(name, params(), lr=0.01, weight_decay=0)) is cls


def test_optimizer_names_are_the_documented_five() -> None:
    assert tuple(OPTIMIZERS) == ("Adam", "AdamW", "SGD", "AdaBelief", "Ranger")


def test_sgd_uses_nesterov_momentum() -> None:
    group = build_optimizer("SGD", params(), lr=0.1, weight_decay=0).param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True





@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_torchs_optimizers_take_the_fused_update_unless_told_not_to(name: str) -> None:
    assert build_optimizer(name, params(), lr=0.01, weight_decay=0).defaults["fused"] is True
    assert build_optimizer(name, params(), lr=0.01, weight_decay=0, fused=False).defaults["fused"] is False


class OptimizerSeen(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.fused = trainer.optimizers[0].defaults["fused"]


@pytest.mark.parametrize(("precision", "clip", "fused"),
                         [("bf16-mixed", None, True), ("bf16-mixed", 1.0, False), ("32-true", 1.0, True)])
def test_mixed_precision_with_gradient_clipping_trains_with_an_unfused_optimizer(precision, clip, fused) -> None:
    """Lightning's mixed precision refuses to clip a fused optimizer's gradients ("does not allow for gradient
    clipping ... a 'fused' optimizer?", also under bf16-mixed, the default on recent GPUs): with gradient_clip_val
    the module asks for torch's per-tensor update there, and only there. A real Trainer, on CPU."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(4) % 2), batch_size=2)
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=["a", "b"], img_size=(32, 32),
                            optimizer="AdamW", scheduler="none")  # fmt: skip
    seen = OptimizerSeen()
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=1, precision=precision, gradient_clip_val=clip,
                        logger=False, callbacks=[seen], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, data)
    assert seen.fused is fused and trainer.global_step == 2


# ------------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("default-0.1-3", "default", {"factor": 0.1, "patience": 3}),
        ("DEFAULT-0.5-0", "default", {"factor": 0.5, "patience": 0}),
        ("default-1e-1-3", "default", {"factor": 0.1, "patience": 3}),
        ("step-5-0.5", "step", {"step_size": 5, "gamma": 0.5}),
        ("step-10-1", "step", {"step_size": 10, "gamma": 1.0}),
        ("SGDR-5-2", "sgdr", {"T_0": 5, "T_mult": 2}),
        ("sgdr-1-1", "sgdr", {"T_0": 1, "T_mult": 1}),
        ("multi-10,20-0.1", "multi", {"milestones": (10, 20), "gamma": 0.1}),
        ("multi-10_20_30-.5", "multi", {"milestones": (10, 20, 30), "gamma": 0.5}),
        ("Multi-7-0.1", "multi", {"milestones": (7,), "gamma": 0.1}),
        ("cosine", "cosine", {}),
        ("OneCycle", "onecycle", {}),
        ("none", "none", {}),
        ("None", "none", {}),
    ],
)
def test_parse_valid(text: str, kind: str, expected: dict) -> None:
    assert parse_scheduler(text) == SchedulerSpec(kind, expected)


def test_docs_scheduler_table_is_the_generated_one() -> None:
    """docs/configuration.md shows the grammar table generated from SCHEDULER_FORMS (python -m digitcls.model.optim)."""
    page = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    start = page.index("| form | example | meaning |")
    shown = page[start:].split("\n\n", 1)[0]
    assert shown == scheduler_table(), "docs/configuration.md's table differs: paste `python -m digitcls.model.optim`"


def test_step_gamma_is_a_float() -> None:  # the tutorial parsed it as an int: 0.5 -> 0
    gamma = parse_scheduler("step-5-0.5").params["gamma"]
    assert isinstance(gamma, float) and gamma == 0.5


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("step-5", None),
        ("default-0.1", None),
        ("SGDR-0-2", "T0 and TMULT"),
        ("SGDR-5-0", "T0 and TMULT"),
        ("SGDR-5-1.5", None),
        ("multi-20,10-0.1", "strictly increasing"),
        ("multi-10,10-0.1", "strictly increasing"),
        ("multi-0,10-0.1", "strictly increasing"),
        ("multi-10,-0.1", None),
        ("default-1.5-3", "factor F"),
        ("default-0-3", "factor F"),
        ("default-0.1-2.5", None),
        ("step-0-0.5", "step S"),
        ("step-5-0", "gamma G"),
        ("step-5-2", "gamma G"),
        ("plateau", None),
        ("steplr-5-0.5", None),  # substring trap
        ("xstep-5-0.5", None),
        ("step-5-0.5-1", None),
        (" step-5-0.5", None),
        ("cosine-10", None),
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_parse_invalid(text: object, reason: str | None) -> None:
    with pytest.raises(ConfigError, match="scheduler") as error:
        parse_scheduler(text)  # type: ignore[arg-type]
    message = str(error.value)
    assert repr(text) in message
    for form in SCHEDULER_FORMS.values():
        assert form.form in message and all(example in message for example in form.examples)
    assert 'scheduler="multi-10,20-0.1"' in message
    if reason:
        assert reason in message


# ------------------------------------------------------------------------------------- schedulers


def step_like_lightning(configs: list[dict], interval: str, metric: float = 0.5) -> None:
    """Step the schedulers of one interval the way Lightning does (the plateau gets the monitored value)."""
    for config in configs:
        if config["interval"] == interval:
            config["scheduler"].step(metric) if "monitor" in config else config["scheduler"].step()


def lr_curve(
    spec: str, *, warmup: int = 0, epochs: int = 10, metric: float = 0.5, steps_per_epoch: int = 1
) -> list[float]:
    """lr at every step, stepping per-step schedulers after each step and the others after each epoch."""
    optimizer = build_optimizer("SGD", params(), lr=1.0, weight_decay=0)
    configs = build_scheduler(spec, optimizer, warmup_epoch=warmup, epochs=epochs, steps_per_epoch=steps_per_epoch)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(round(optimizer.param_groups[0]["lr"], 6))
            optimizer.step()
            step_like_lightning(configs, "step")
        step_like_lightning(configs, "epoch", metric)
    return lrs


def cos(t: float, period: float) -> float:
    return round((1 + math.cos(math.pi * t / period)) / 2, 6)


@pytest.mark.parametrize(
    ("spec", "warmup", "expected"),
    [
        ("none", 0, [1.0] * 10),
        ("step-3-0.5", 0, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]),
        ("multi-2,5-0.1", 0, [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01]),
        ("multi-2_5-0.1", 0, [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01]),
        (
            "SGDR-2-2",
            0,
            [1, cos(1, 2), 1, cos(1, 4), cos(2, 4), cos(3, 4), 1, cos(1, 8), cos(2, 8), cos(3, 8)],
        ),
        ("cosine", 0, [cos(e, 10) for e in range(10)]),
        # flat metric, patience 1: the first epoch sets the best, two bad epochs later the lr halves
        ("default-0.5-1", 0, [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625]),
        # warm-up: lr/10 to lr linearly over W epochs, then the main schedule from its own epoch 0
        ("none", 2, [0.1, 0.55, 1, 1, 1, 1, 1, 1, 1, 1]),
        ("step-3-0.5", 2, [0.1, 0.55, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]),
        ("multi-2,5-0.1", 2, [0.1, 0.55, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]),
        ("SGDR-2-1", 2, [0.1, 0.55, 1, 0.5, 1, 0.5, 1, 0.5, 1, 0.5]),
        ("cosine", 2, [0.1, 0.55] + [cos(e, 8) for e in range(8)]),
        ("default-0.5-1", 3, [0.1, 0.4, 0.7, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]),
    ],
)
def test_lr_curves(spec: str, warmup: int, expected: list[float]) -> None:
    assert lr_curve(spec, warmup=warmup) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("spec", ["none", "step-3-0.5", "multi-2,5-0.1", "SGDR-2-1", "cosine", "default-0.5-1"])
def test_warmup_ramps_every_step(spec: str) -> None:
    """4 steps per epoch, 2 warm-up epochs: lr/10 + 0.9 lr * step / 8 at every step, then the main schedule
    starts from learning_rate at epoch 2 exactly as it does without a warm-up."""
    with_warmup = lr_curve(spec, warmup=2, steps_per_epoch=4)
    assert with_warmup[:8] == pytest.approx([0.1 + 0.9 * step / 8 for step in range(8)], abs=1e-6)
    assert with_warmup[8:] == pytest.approx(lr_curve(spec, epochs=8, steps_per_epoch=4), abs=1e-6)


def test_plateau_keeps_lr_while_improving() -> None:
    optimizer = build_optimizer("SGD", params(), lr=1.0, weight_decay=0)
    configs = build_scheduler("default-0.5-0", optimizer, warmup_epoch=1, epochs=6, steps_per_epoch=1)
    for metric in (0.1, 0.2, 0.3, 0.4, 0.5):  # the first one falls in the warm-up
        optimizer.step()
        step_like_lightning(configs, "step")
        step_like_lightning(configs, "epoch", metric)
    assert optimizer.param_groups[0]["lr"] == 1.0


@pytest.mark.parametrize(
    ("spec", "warmup", "expected"),
    [
        ("default-0.1-3", 0, [(ReduceLROnPlateau, "epoch")]),
        ("default-0.1-3", 2, [(LinearLR, "step"), (PlateauAfterWarmup, "epoch")]),
        ("step-5-0.5", 0, [(StepLR, "epoch")]),
        ("step-5-0.5", 2, [(LinearLR, "step"), (SequentialLR, "epoch")]),
        ("none", 0, []),
        ("none", 2, [(LinearLR, "step")]),
        ("onecycle", 0, [(OneCycleLR, "step")]),
        ("onecycle", 2, [(OneCycleLR, "step")]),
    ],
)
def test_lightning_configs(spec: str, warmup: int, expected: list[tuple[type, str]]) -> None:
    optimizer = build_optimizer("AdamW", params(), lr=0.01, weight_decay=0)
    configs = build_scheduler(spec, optimizer, warmup_epoch=warmup, epochs=10, steps_per_epoch=5)
    assert [(type(c["scheduler"]), c["interval"]) for c in configs] == expected
    for config in configs:
        assert config["frequency"] == 1
        # Lightning passes the monitored value to every ReduceLROnPlateau, subclasses included
        is_plateau = isinstance(config["scheduler"], ReduceLROnPlateau)
        assert config.get("monitor") == ("val_acc" if is_plateau else None)


def test_onecycle_warmup_sets_pct_start() -> None:
    optimizer = build_optimizer("SGD", params(), lr=1.0, weight_decay=0)
    (config,) = build_scheduler("onecycle", optimizer, warmup_epoch=2, epochs=10, steps_per_epoch=4)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        config["scheduler"].step()
    assert max(lrs) == pytest.approx(1.0, abs=1e-3)
    assert lrs.index(max(lrs)) in (7, 8)  # the peak ends the 2 warm-up epochs (8 steps)
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(onecycle_rise(4, 8))  # from lr/10


def onecycle_rise(step: int, warmup_steps: int) -> float:
    """OneCycleLR's rising phase as a fraction of the peak lr: cosine from 1/10 to 1 over warmup_steps - 1 steps."""
    return 0.1 + 0.9 * (1 - math.cos(math.pi * step / (warmup_steps - 1))) / 2


ALL_SPECS = ["default-0.5-0", "step-2-0.5", "multi-1,3-0.1", "SGDR-2-1", "cosine", "onecycle", "none"]


@pytest.mark.parametrize(
    ("spec", "warmup"), [(spec, w) for spec in ALL_SPECS for w in (0, 2) if (spec, w) != ("none", 0)]
)
def test_param_group_added_later_follows_the_schedule(spec: str, warmup: int) -> None:
    """What the freeze callback does: add the body's group at the head's current lr mid-run."""
    epochs, steps = 6, 3
    optimizer = build_optimizer("AdamW", params(), lr=1.0, weight_decay=0)
    configs = build_scheduler(spec, optimizer, warmup_epoch=warmup, epochs=epochs, steps_per_epoch=steps)
    for epoch in range(epochs):
        if epoch == 1:  # inside the warm-up: the hand-over to the main schedule is closed-form
            optimizer.add_param_group({"params": params(), "lr": optimizer.param_groups[0]["lr"]})
            for config in configs:
                adopt_new_param_groups(config["scheduler"])
        for _ in range(steps):
            if epoch >= 1:
                assert optimizer.param_groups[1]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
            optimizer.step()
            step_like_lightning(configs, "step")
        step_like_lightning(configs, "epoch")
    assert optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[1]["lr"])


class PlateauModule(L.LightningModule):
    """Logs a flat val_acc; records the lr of every training epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", 0.5)

    def on_train_epoch_start(self) -> None:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def configure_optimizers(self):
        optimizer = build_optimizer("SGD", self.parameters(), lr=1.0, weight_decay=0)
        return [optimizer], build_scheduler("default-0.5-0", optimizer, warmup_epoch=2, epochs=6, steps_per_epoch=1)


def test_warmup_plateau_under_lightning() -> None:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2, 4)), batch_size=2)
    module = PlateauModule()
    trainer = L.Trainer(
        max_epochs=6,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, data, data)
    assert module.lrs == pytest.approx([0.1, 0.55, 1.0, 1.0, 0.5, 0.25])


class LrAtEveryStep(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_mid_warmup_lr_under_a_real_trainer(spec: str) -> None:
    """DigitClassifier's own configure_optimizers, 4 steps per epoch, warmup_epoch=2: after 4 of the 8
    warm-up steps the lr is halfway between learning_rate/10 and learning_rate (one-cycle: its cosine rise)."""
    lr = 0.01
    torch.manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.arange(8) % 2), batch_size=2)
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=["a", "b"], img_size=(32, 32),
                            optimizer="SGD", learning_rate=lr, scheduler=spec, warmup_epoch=2, epochs=4)  # fmt: skip
    recorder = LrAtEveryStep()
    # 3 whole epochs (max_steps would change the steps per epoch the schedules are planned with)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=False, callbacks=[recorder],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, data, data)
    assert recorder.lrs[0] == pytest.approx(lr / 10)
    middle = onecycle_rise(4, 8) if spec == "onecycle" else 0.55  # one-cycle's rise is cosine-shaped
    assert recorder.lrs[4] == pytest.approx(lr * middle, rel=1e-6)
    warmup = recorder.lrs[:8]
    assert warmup == sorted(warmup) and len(set(warmup)) == 8  # a new, higher lr at every step
