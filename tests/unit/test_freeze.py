from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from digitcls.callbacks.freeze import FreezeBackbone
from digitcls.errors import ConfigError
from digitcls.model.backbones import build_backbone
from digitcls.model.optim import build_optimizer, build_scheduler


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches gain nothing from threads; with a busy second core, torch's thread pool
    makes these runs 10-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyClassifier(L.LightningModule):
    def __init__(self, scheduler: str = "none", warmup_epoch: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = build_backbone("mobilenetv3_small", 3, dropout=0.0)
        self.scheduler, self.warmup_epoch = scheduler, warmup_epoch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return F.cross_entropy(self(images), labels)

    def configure_optimizers(self):
        # only what is trainable now: the callback adds the body when it unfreezes it
        optimizer = build_optimizer(
            "AdamW", filter(lambda p: p.requires_grad, self.parameters()), lr=1e-2, weight_decay=1e-4
        )
        configs = build_scheduler(
            self.scheduler, optimizer, warmup_epoch=self.warmup_epoch, epochs=3, steps_per_epoch=2
        )
        return ([optimizer], configs) if configs else optimizer


class Recorder(Callback):
    """Snapshots of the body (weights and BatchNorm buffers) and head after every epoch."""

    def __init__(self) -> None:
        self.body: list[dict[str, torch.Tensor]] = []
        self.head: list[dict[str, torch.Tensor]] = []
        self.bn_training: list[bool] = []
        self.groups: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        bns = [m for m in pl_module.backbone.features.modules() if isinstance(m, nn.BatchNorm2d)]
        self.bn_training.append(any(bn.training for bn in bns))
        self.groups.append(len(trainer.optimizers[0].param_groups))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.body.append({k: v.detach().clone() for k, v in pl_module.backbone.features.state_dict().items()})
        self.head.append(
            {k: v.detach().clone() for k, v in pl_module.backbone.classifier.state_dict().items()}
        )


def fit(module: L.LightningModule, *callbacks: Callback, max_epochs: int = 3, ckpt_path=None) -> L.Trainer:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % 3)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_body_frozen_until_unfreeze_epoch() -> None:
    module, recorder = TinyClassifier(), Recorder()
    initial_body = {k: v.clone() for k, v in module.backbone.features.state_dict().items()}
    initial_head = {k: v.clone() for k, v in module.backbone.classifier.state_dict().items()}
    fit(module, FreezeBackbone(unfreeze_at_epoch=2), recorder)

    # epochs 0 and 1: the body (weights and BatchNorm running stats) does not move, the head does
    assert same(initial_body, recorder.body[0]) and same(initial_body, recorder.body[1])
    assert not same(initial_head, recorder.head[0]) and not same(recorder.head[0], recorder.head[1])
    # epoch 2: the body trains, BatchNorm statistics included
    weights = [k for k in initial_body if k.endswith("weight")]
    running = [k for k in initial_body if k.endswith("running_mean")]
    assert any(not torch.equal(recorder.body[1][k], recorder.body[2][k]) for k in weights)
    assert any(not torch.equal(recorder.body[1][k], recorder.body[2][k]) for k in running)
    # BatchNorm in eval mode while frozen; one param group more from the unfreeze epoch on
    assert recorder.bn_training == [False] * 4 + [True] * 2
    assert recorder.groups == [1] * 4 + [2] * 2
    assert all(p.requires_grad for p in module.parameters())


def test_unfreeze_at_zero_is_harmless() -> None:
    module, recorder = TinyClassifier(), Recorder()
    initial_body = {k: v.clone() for k, v in module.backbone.features.state_dict().items()}
    fit(module, FreezeBackbone(unfreeze_at_epoch=0), recorder)
    assert not same(initial_body, recorder.body[0])
    assert recorder.bn_training == [True] * 6
    assert recorder.groups == [1] * 6


def test_resume_after_the_unfreeze_epoch(tmp_path) -> None:
    first = TinyClassifier()
    trainer = fit(first, FreezeBackbone(unfreeze_at_epoch=1), max_epochs=2)
    trainer.save_checkpoint(tmp_path / "last.ckpt")

    module, recorder = TinyClassifier(), Recorder()
    fit(module, FreezeBackbone(unfreeze_at_epoch=1), recorder, max_epochs=3, ckpt_path=tmp_path / "last.ckpt")
    # the restored optimizer already holds the body: it must train, not stay frozen inside the optimizer
    assert recorder.groups == [2, 2] and recorder.bn_training == [True, True]
    assert all(p.requires_grad for p in module.parameters())
    assert not same(first.backbone.features.state_dict(), recorder.body[0])


def test_scheduler_with_warmup_drives_the_unfrozen_body() -> None:
    # SGDR after a 2-epoch warm-up: the hand-over at epoch 2 is closed-form and needs every group's base lr
    module = TinyClassifier(scheduler="SGDR-1-1", warmup_epoch=2)
    fit(module, FreezeBackbone(unfreeze_at_epoch=1))
    head, body = module.trainer.optimizers[0].param_groups
    assert body["lr"] == pytest.approx(head["lr"])


def test_body_is_released_when_fit_ends_first() -> None:
    module = TinyClassifier()
    fit(module, FreezeBackbone(unfreeze_at_epoch=5))
    assert all(p.requires_grad for p in module.parameters())


def test_module_without_features_freezes_its_backbone() -> None:
    module = TinyClassifier()
    head = module.backbone.classifier
    module.backbone = module.backbone.features  # `backbone` is the body itself
    FreezeBackbone(unfreeze_at_epoch=1).freeze_before_training(module)
    assert not any(p.requires_grad for p in module.backbone.parameters())
    assert all(p.requires_grad for p in head.parameters())



def test_module_without_backbone() -> None:
    with pytest.raises(ConfigError, match="freeze_nonlinear_epoch=0"):
        FreezeBackbone(unfreeze_at_epoch=1).freeze_before_training(L.LightningModule())


def test_multi_process_training_is_refused() -> None:
    trainer = SimpleNamespace(world_size=2)
    with pytest.raises(ConfigError, match="freeze_nonlinear_epoch=0"):
        FreezeBackbone(unfreeze_at_epoch=1).setup(trainer, TinyClassifier(), "fit")  # type: ignore[arg-type]
    FreezeBackbone(unfreeze_at_epoch=0).setup(trainer, TinyClassifier(), "fit")  # type: ignore[arg-type]
