"""Which images each process reads, in which order: exact in DDP, reproducible across resumes.

* :class:`EpochShuffle` (training): epoch k's order is a permutation seeded by ``seed + k`` (torch's
  ``DistributedSampler`` rule), whatever process computes it, so a resumed run repeats no earlier epoch's order.
  Each rank takes its share of it (padded to equal shares: DDP training needs the same step count everywhere).
  The training loader is torchdata's ``StatefulDataLoader``: Lightning saves its ``state_dict`` in every
  checkpoint and restores it before iterating, so a run stopped after batch b of epoch k resumes at batch
  b + 1 of the same order.
"""

from __future__ import annotations

from typing import Any

from torchdata.stateful_dataloader.sampler import BatchSampler, StatefulDistributedSampler


class EpochShuffle(StatefulDistributedSampler):
    """torchdata's resumable ``DistributedSampler``, whose saved position also holds its epoch.

    Restored, it is set to that epoch at once: Lightning creates the resumed epoch's iterator (and worker
    processes start drawing indices) before it calls ``set_epoch``. A position at the end of an epoch (the
    ``last.ckpt`` written there) means the next epoch from its first index; torchdata's own would skip the
    saved number of indices of the next epoch, i.e. all of it.
    """

    def __init__(self, dataset: Any, seed: int, rank: int = 0, world: int = 1) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        epoch = int(state_dict["epoch"])
        if self.next_yielded is not None and self.next_yielded >= len(self):
            epoch, self.next_yielded = epoch + 1, 0
        self.set_epoch(epoch)


class EpochBatches(BatchSampler):
    """torchdata's resumable BatchSampler, forwarding ``set_epoch`` (Lightning calls it on ``DataLoader.sampler``
    only, which is this when whole batches are sliced from memory)."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
