"""Which images each rank reads: evaluation shards cover every image exactly once (no padding), on both data
paths; the training order depends on (seed, epoch) only; a restored training loader continues the same order.

Ranks are simulated by asking the DataModule for rank r of w in turn (the real 2-process run is in
test_ddp.py, slow)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import Dataset

from digitcls.data.cache import TensorSplit
from digitcls.data.datamodule import DigitDataModule
from digitcls.data.samplers import EpochShuffle
from digitcls.errors import DataError


class Numbered(Dataset):
    """Per-file stand-in: item i is (a 1-pixel image, i)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(1, 1, 1, dtype=torch.uint8), index


def numbered_split(size: int, path: str) -> Dataset:
    if path == "in-memory":
        return TensorSplit(torch.zeros(size, 1, 1, 1, dtype=torch.uint8), torch.arange(size))
    return Numbered(size)


def datamodule(batch_size: int, rank: int, world: int, monkeypatch: pytest.MonkeyPatch) -> DigitDataModule:
    dm = DigitDataModule(None, None, None, img_size=(16, 16), batch_size=batch_size, random_seed=7)
    monkeypatch.setattr(dm, "_rank_and_world", lambda: (rank, world))
    return dm


def labels_seen(loader) -> list[int]:
    return [int(label) for _, labels in loader for label in labels]


@pytest.mark.parametrize("path", ["in-memory", "per-file"])
@pytest.mark.parametrize(("size", "batch_size", "world"), [(10, 3, 2), (101, 8, 4), (7, 16, 3), (50, 7, 8), (1, 4, 1), (4, 4, 4)])
def test_evaluation_shards_count_every_image_once(
    path: str, size: int, batch_size: int, world: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: Counter[int] = Counter()
    for rank in range(world):
        dm = datamodule(batch_size, rank, world, monkeypatch)
        dm.test_dataset = numbered_split(size, path)
        loader = dm.test_dataloader()
        shard = labels_seen(loader)
        assert len(shard) in (size // world, size // world + 1)  # uneven by at most one image, never padded
        assert len(loader) == -(-len(shard) // batch_size)
        seen.update(shard)
    assert seen == Counter(range(size))  # each index exactly once across ranks


def test_fewer_evaluation_images_than_processes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    dm = datamodule(batch_size=4, rank=0, world=4, monkeypatch=monkeypatch)
    dm.val_dataset = numbered_split(3, "per-file")
    with pytest.raises(DataError, match="an evaluation set of 3 images cannot be shared by 4 processes"):
        dm.val_dataloader()


def test_training_order_depends_on_seed_and_epoch_only() -> None:
    data = list(range(40))

    def order(seed: int, epoch: int) -> list[int]:
        # a fresh object, as in a resumed process
        sampler = EpochShuffle(data, num_replicas=1, rank=0, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(7, 3) == order(7, 3)
    assert order(7, 0) != order(7, 1) and order(7, 1) != order(8, 1)
    assert sorted(order(7, 5)) == data
    # with 3 ranks each takes its share of the same permutation (padded to equal shares for training)
    shares = [EpochShuffle(data, num_replicas=3, rank=r, seed=7) for r in range(3)]
    for share in shares:
        share.set_epoch(2)
    assert set().union(*map(set, shares)) == set(data) and {len(s) for s in shares} == {14}


@pytest.mark.parametrize(("path", "workers"), [("in-memory", 0), ("per-file", 0), ("per-file", 2)])
@pytest.mark.parametrize("stopped_after", [0, 1, 4, 5])  # 5 = the end of the epoch
def test_a_restored_training_loader_continues_the_same_order(
    path: str, workers: int, stopped_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Lightning does with the training loader (torchdata's StatefulDataLoader): ``set_epoch``, batches
    until a checkpoint takes ``state_dict``; in a new process a new loader, ``load_state_dict``, ``iter``, then
    ``set_epoch`` of the epoch it resumes in (the next one after an end-of-epoch checkpoint), batches."""
    dm = datamodule(batch_size=4, rank=0, world=1, monkeypatch=monkeypatch)
    dm.hparams.num_workers = workers
    dm.train_dataset = numbered_split(18, path)  # 5 batches: 4 4 4 4 2
    first = dm.train_dataloader()
    first.sampler.set_epoch(3)
    batches = iter(first)
    done = [next(batches) for _ in range(stopped_after)]  # Lightning never asks past the last batch
    state = first.state_dict()
    uninterrupted = labels_seen(done) + labels_seen(batches)
    first.sampler.set_epoch(4)
    epoch_4 = labels_seen(first)

    resumed = dm.train_dataloader()  # a new process: a new loader, restored from the checkpoint
    resumed.load_state_dict(state)
    resumed_batches = iter(resumed)  # Lightning's FitLoop.setup_data, before the epoch is set
    resumed.sampler.set_epoch(3 if stopped_after < 5 else 4)
    rest = labels_seen(resumed_batches)
    if stopped_after < 5:
        assert rest == uninterrupted[len(labels_seen(done)) :]  # the batches not trained on yet, same order
    else:
        assert rest == epoch_4  # an end-of-epoch checkpoint resumes with the whole next epoch (torchdata alone
        # would skip it: it skips the saved count of whatever epoch comes next)
    resumed.sampler.set_epoch(4)
    assert labels_seen(resumed) == epoch_4  # and the epochs after it are whole


def test_random_states_survive_a_weights_only_checkpoint_load(tmp_path) -> None:
    """What Lightning does with DataModule.state_dict on resume (and trainer.test(ckpt_path=...)): torch.load
    with weights_only=True, then load_state_dict; the next random draws are those the saving run made."""
    import random

    import numpy as np

    dm = DigitDataModule(None, None, None, img_size=(16, 16))
    torch.save({"DigitDataModule": dm.state_dict()}, tmp_path / "x.ckpt")
    expected = (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])
    dm.load_state_dict(torch.load(tmp_path / "x.ckpt", weights_only=True)["DigitDataModule"])
    assert (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]) == expected
