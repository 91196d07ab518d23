"""The four save_best_only x save_one_only combinations with a real Trainer: which checkpoint files are kept
(docs/configuration.md). A tiny module reports a scripted val_acc per epoch, so the expected files are known."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from digitcls.callbacks.checkpoint import AtomicCheckpointIO, BestCheckpoint

VAL_ACC = [0.5, 0.7, 0.6, 0.8, 0.4]  # improves at epochs 0, 1, 3; epoch 4 is the newest and the worst


class ScriptedValAcc(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx) -> None:
        self.log("val_acc", VAL_ACC[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class FilesAfterEachEpoch(L.Callback):
    """The checkpoint files on disk after every epoch: read when the next epoch starts and when fit ends,
    since Lightning runs checkpoint callbacks after all others in the same hook."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: list[set[str]] = []
        self.last_epochs: list[int] = []  # the epoch last.ckpt holds when the next epoch starts

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            self.seen.append(files(self.folder))
            self.last_epochs.append(torch.load(self.folder / "last.ckpt", weights_only=False)["epoch"])

    def on_fit_end(self, trainer, pl_module) -> None:
        self.seen.append(files(self.folder))


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.ckpt") if p.name != "last.ckpt"}


def name(epoch: int) -> str:
    return f"net_e{epoch}_{VAL_ACC[epoch]:.5f}.ckpt"


@pytest.mark.parametrize(
    ("save_best_only", "save_one_only", "kept_after_each_epoch"),
    [
        (True, True, [{0}, {1}, {1}, {3}, {3}]),  # one file: the best, replaced only by a better one
        (True, False, [{0}, {0, 1}, {0, 1}, {0, 1, 3}, {0, 1, 3}]),  # a file per improvement
        (False, True, [{0}, {1}, {1, 2}, {3}, {3, 4}]),  # every epoch; only the newest and the best stay
        (False, False, [{0}, {0, 1}, {0, 1, 2}, {0, 1, 2, 3}, {0, 1, 2, 3, 4}]),  # every epoch, all kept
    ],
)
def test_checkpoint_flags(
    save_best_only: bool, save_one_only: bool, kept_after_each_epoch: list[set[int]], tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoints"
    checkpoint = BestCheckpoint(folder, "net", save_best_only, save_one_only)
    recorder = FilesAfterEachEpoch(folder)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2, 2)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=len(VAL_ACC), accelerator="cpu", devices=1, logger=False, callbacks=[recorder, checkpoint],
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(ScriptedValAcc(), data, data)

    assert recorder.seen == [{name(e) for e in kept} for kept in kept_after_each_epoch]
    # rewritten after every epoch, improved or not (epoch 2 and 4 are worse than the best)
    assert recorder.last_epochs == list(range(len(VAL_ACC) - 1))
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    assert not list(folder.glob(".*.tmp"))
    assert Path(checkpoint.best_model_path).name == name(3)  # the best, whatever the flags
    assert float(checkpoint.best_model_score) == pytest.approx(0.8)
    assert torch.load(folder / "last.ckpt", weights_only=False)["epoch"] == len(VAL_ACC) - 1
