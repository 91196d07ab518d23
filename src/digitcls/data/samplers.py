"""Which images each process reads, in which order: exact in DDP, reproducible across resumes.

* :class:`EpochShuffle` (training): epoch k's order is a permutation seeded by ``seed + k`` (torch's
  ``DistributedSampler`` rule), whatever process computes it, so a resumed run repeats no earlier epoch's order.
  Each rank takes its share of it (padded to equal shares: DDP training needs the same step count everywhere).
* :class:`Shard` (validation/test): rank r of w takes images r, r + w, r + 2w, ...: every image exactly once
  across ranks, no padding, so synced metrics count each image once (shards may differ by one image).
* :class:`ResumableLoader` (training): a DataLoader with ``state_dict``/``load_state_dict``, which Lightning
  saves in every checkpoint and restores before iterating: a run stopped after batch b of epoch k resumes
  at batch b + 1 of the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler


class EpochShuffle(DistributedSampler):
    """A (seed, epoch)-seeded shuffle, this rank's share; :meth:`start_at` skips what a resumed run has done."""

    def __init__(self, dataset: Sized, seed: int, rank: int = 0, world: int = 1) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        self.skip = 0  # indices of this epoch's share to leave out, once

    def start_at(self, epoch: int, skip: int) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())[self.skip :]
        self.skip = 0
        return iter(order)


class Shard(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``size``: disjoint shards that together cover each index once."""

    def __init__(self, size: int, rank: int = 0, world: int = 1) -> None:
        self.indices = range(rank, size, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochBatches(BatchSampler):
    """A BatchSampler that forwards ``set_epoch`` (Lightning calls it on ``DataLoader.sampler`` only)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]


class ResumableLoader(DataLoader):
    """The training DataLoader: counts the batches it hands out, so a checkpoint knows where the epoch stood.

    Lightning does not prefetch from a loader whose length it knows, so a batch handed out is a batch trained
    on when the checkpoint is written (at a batch boundary or an epoch end).
    """

    def __init__(self, *args: Any, order: EpochShuffle, images_per_batch: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.order = order
        self.images_per_batch = images_per_batch
        self.position = {"epoch": 0, "batches_done": 0}

    def __iter__(self) -> Iterator[Any]:
        # runs at the first batch, after Lightning's set_epoch and any load_state_dict
        epoch, done = self.order.epoch, self.order.skip // self.images_per_batch
        self.position = {"epoch": epoch, "batches_done": done}
        for batch in super().__iter__():
            done += 1
            self.position = {"epoch": epoch, "batches_done": done}
            yield batch

    def state_dict(self) -> dict[str, int]:
        if self.position["epoch"] != self.order.epoch:  # the next epoch is set but has not started
            return {"epoch": self.order.epoch, "batches_done": self.order.skip // self.images_per_batch}
        return dict(self.position)

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved at the end of an epoch: the next one starts from its first batch
            epoch, done = epoch + 1, 0
        self.order.start_at(epoch, done * self.images_per_batch)
        self.position = {"epoch": epoch, "batches_done": done}
