"""The in-memory data path (``data_cache=true``, docs/data.md): each split decoded once into a uint8 tensor,
cached on disk under ``data/.cache`` and sliced into batches by index lists, with no per-item work.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from digitcls.atomic import atomic_path, writer

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def fits_in_memory(count: int, img_size: tuple[int, int]) -> bool:
    """Whether ``count`` decoded uint8 RGB images take at most half the available memory (the rest is for the
    model, the batches and the other splits)."""
    available = available_memory()
    return available is None or count * 3 * img_size[0] * img_size[1] <= available / 2


def _decode_all(split: Dataset) -> tuple[Tensor, Tensor]:
    # OpenCV releases the GIL while decoding, so threads scale across cores
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        items = [item for item in pool.map(split.__getitem__, range(len(split)), chunksize=256) if item]
    if not items:
        return torch.empty(0, 3, *split.img_size, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


def load_split(split: Dataset, cache_dir: Path) -> tuple[Tensor, Tensor]:
    """``split`` (a ``datamodule.ImageFolderDataset``) as (uint8 N x 3 x H x W, int64 N), from the disk cache
    when current; decoded by its own ``__getitem__``: the folder path's pixels and bad-image handling."""
    # the key: everything the tensor depends on (the pixel limit decides which files are skipped)
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{tuple(split.img_size)}|{split.max_image_pixels}".encode())
    for file, label in split.samples:
        stat = os.stat(file)
        digest.update(f"{file}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    path = cache_dir / f"{digest.hexdigest()[:24]}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            return cached["images"], cached["labels"]
        except Exception as error:  # a damaged cache is rebuilt, never trusted
            log.warning("data cache %s unreadable (%s); rebuilding it", path, error)
    images, labels = _decode_all(split)
    try:
        save_split(path, images, labels)
    except OSError as error:  # e.g. a read-only dataset: the decoded split still serves this run
        log.warning(
            "data_cache: cannot save the decoded split to %s (%s): keeping it in memory for this run only; "
            "every run decodes it again until that folder is writable",
            cache_dir, error.strerror or error,
        )  # fmt: skip
    return images, labels


@writer
def save_split(path: Path, images: Tensor, labels: Tensor) -> Path:
    with atomic_path(path) as tmp:  # a reader sees no file or the whole file
        torch.save({"images": images, "labels": labels}, tmp)
    return path


class TensorSplit(TensorDataset):
    """A decoded split (images, labels), indexed by a list of indices: a whole batch at once."""

    def __getitem__(self, index: list[int]) -> tuple[Tensor, ...]:
        rows = torch.as_tensor(index)
        # index_select copies whole rows: ~3x faster than advanced indexing on uint8 images
        return tuple(tensor.index_select(0, rows) for tensor in self.tensors)
