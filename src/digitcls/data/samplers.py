"""The training order: exact in DDP, reproducible across resumes (docs/scaling.md, docs/troubleshooting.md).

Epoch k's order is a permutation seeded by ``seed + k`` (torch's ``DistributedSampler`` rule), padded to equal
shares per rank; Lightning saves the StatefulDataLoader's position in every checkpoint and restores it.
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
