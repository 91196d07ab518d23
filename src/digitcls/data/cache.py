"""The in-memory data path: each split decoded once into a uint8 tensor, cached on disk.

The folder path decodes and resizes every image with OpenCV on every epoch, one Python call per item.
Here a split is decoded once (the same ``load_image_tensor`` as the folder path, so the pixels are
identical), stacked into one ``N x 3 x H x W`` uint8 tensor and saved under ``data/.cache``. The cache
key covers the file list, sizes, mtimes and ``img_size``: any change rebuilds it. Batches are sliced
from the tensor by index lists (``BatchSampler`` + ``batch_size=None``), so there is no per-item work
at all and no need for worker processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from digitcls.data.images import load_image_tensor
from digitcls.data.transforms import parse_img_size
from digitcls.errors import BadImageError

log = logging.getLogger("digitcls")

CACHE_VERSION = 1


def cache_key(samples: Sequence[tuple[Path, int]], img_size: int | Sequence[int]) -> str:
    """A digest of everything the decoded tensor depends on."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{parse_img_size(img_size)}".encode())
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _decode_all(
    samples: Sequence[tuple[Path, int]], img_size: int | Sequence[int], on_bad_image: str
) -> tuple[Tensor, Tensor]:
    def decode(sample: tuple[Path, int]) -> Tensor | None:
        try:
            return load_image_tensor(sample[0], img_size)
        except BadImageError as error:
            if on_bad_image == "error":
                raise
            warnings.warn(f"skipping bad image: {error}", stacklevel=2)
            return None

    # OpenCV releases the GIL while decoding, so threads scale across cores
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(decode, samples, chunksize=256))
    kept = [(image, label) for image, (_, label) in zip(images, samples, strict=True) if image is not None]
    if not kept:
        height, width = parse_img_size(img_size)
        return torch.empty(0, 3, height, width, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([image for image, _ in kept]), torch.tensor(
        [label for _, label in kept], dtype=torch.int64
    )


def load_split(
    samples: Sequence[tuple[Path, int]],
    img_size: int | Sequence[int],
    cache_dir: Path,
    on_bad_image: str = "skip",
) -> tuple[Tensor, Tensor]:
    """The split as ``(images uint8 N x 3 x H x W, labels int64 N)``, from the disk cache when it is current."""
    key = cache_key(samples, img_size)
    path = cache_dir / f"{key}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            return cached["images"], cached["labels"]
        except Exception as error:  # a damaged cache is rebuilt, never trusted
            log.warning("data cache %s unreadable (%s); rebuilding it", path, error)
    images, labels = _decode_all(samples, img_size, on_bad_image)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"images": images, "labels": labels}, tmp)
    tmp.replace(path)  # atomic: a reader sees the old state or the whole new file
    (cache_dir / f"{key}.json").write_text(
        json.dumps({"n": len(labels), "img_size": list(parse_img_size(img_size))})
    )
    return images, labels


class TensorSplit(Dataset):
    """A decoded split; indexing with a list of indices returns a whole batch at once."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | list[int]) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]
