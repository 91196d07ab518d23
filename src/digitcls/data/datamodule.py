"""Image folders -> batches: labelled train/val/test splits of uint8 C x H x W tensors at ``img_size``.

An undecodable file becomes ``None`` and the collate function drops it (no up-front decode of every file).
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import BatchSampler, DataLoader, Dataset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from digitcls.checkpoints import to_plain
from digitcls.data.cache import TensorSplit, fits_in_memory, load_split
from digitcls.data.folders import discover_classes, labelled_samples
from digitcls.data.images import DEFAULT_MAX_IMAGE_PIXELS, load_inputs, to_chw_tensor
from digitcls.data.samplers import EpochBatches, EpochShuffle
from digitcls.data.transforms import batch_augment, parse_augment
from digitcls.errors import DataError
from digitcls.schema import TRAIN

log = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, int]


class ImageFolderDataset(Dataset):
    """(image, class index) pairs; a bad file (or one over ``max_image_pixels``) is ``None`` (skip, one
    warning per file) or raises (error)."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        img_size: Sequence[int],
        on_bad_image: str = "skip",
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        self.samples = samples
        self.img_size: tuple[int, int] = tuple(img_size)
        self.on_bad_image = on_bad_image
        self.max_image_pixels = max_image_pixels
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample | None:
        path, label = self.samples[index]
        loaded, _ = load_inputs([path], self.img_size, None, self.max_image_pixels, self.on_bad_image, self._warned)
        return (to_chw_tensor(loaded[0][1]), label) if loaded else None


def collate_labelled(batch: list[Sample | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack the readable samples; ``None`` when none is (Lightning skips a ``None`` training batch)."""
    kept = [item for item in batch if item is not None]
    return default_collate(kept) if kept else None


def train_subset(samples: list[tuple[Path, int]], items: int, seed: int) -> list[tuple[Path, int]]:
    """A seeded random subset of ``items`` samples (0 or more than there are = all), in folder order."""
    if items <= 0 or items >= len(samples):
        return samples
    picked = sorted(random.Random(seed).sample(range(len(samples)), items))
    return [samples[i] for i in picked]


def _require_folder(path: str | Path | None, key: str) -> Path:
    if not path or not Path(path).is_dir():
        raise DataError(
            f"{key}: folder {path} does not exist. Run `make data` to prepare MNIST into data/, "
            f"or set {key}=<a folder with one sub-folder per class>."
        )
    return Path(path)


class DigitDataModule(L.LightningDataModule):
    """Labelled image folders (``<split>/<class>/<image>``) for fit, validate and test.

    Class names come from the training folder (natural sort) unless ``class_names`` is given (e.g. from a
    checkpoint); other splits are mapped by name and may only hold known classes.
    """

    def __init__(
        self,
        train_path: str | Path | None,
        val_path: str | Path | None,
        test_path: str | Path | None,
        img_size: Sequence[int],
        batch_size: int = TRAIN.batch_size,
        num_workers: int = TRAIN.num_workers,
        try_to_train_items: int = TRAIN.try_to_train_items,
        random_seed: int = TRAIN.random_seed,
        augment: Mapping[str, Any] | None = TRAIN.augment,
        on_bad_image: str = TRAIN.on_bad_image,
        data_cache: bool = TRAIN.data_cache,
        class_names: Sequence[str] | None = None,
        max_image_pixels: int = TRAIN.max_image_pixels,
    ):
        super().__init__()
        # the config's values, saved in checkpoints (paths as strings: weights_only loading reads them back);
        # Lightning logs the model's hyperparameters, LogConfig the whole config
        self.save_hyperparameters(ignore=["class_names"], logger=False)
        self.hparams.update(to_plain(dict(self.hparams), "DigitDataModule hyperparameters"))
        self.img_size: tuple[int, int] = tuple(img_size)
        self.augment = parse_augment(augment)
        self.class_names: list[str] | None = list(class_names) if class_names is not None else None
        self.train_dataset: ImageFolderDataset | TensorSplit | None = None
        self.val_dataset: ImageFolderDataset | TensorSplit | None = None
        self.test_dataset: ImageFolderDataset | TensorSplit | None = None

    # ------------------------------------------------------------------ datasets

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets ``stage`` needs (None: train and val); datasets already built are kept."""
        if stage in (None, "fit"):
            self.train_dataset = self.train_dataset or self._labelled("train")
        if stage in (None, "fit", "validate"):
            self.val_dataset = self.val_dataset or self._labelled("val")
        if stage == "test":
            self.test_dataset = self.test_dataset or self._labelled("test")

    def _labelled(self, split: str) -> ImageFolderDataset | TensorSplit:
        hp, key = self.hparams, f"{split}_path"
        root = _require_folder(hp[key], key)
        if self.class_names is None:
            self.class_names = discover_classes(_require_folder(hp.train_path, "train_path"))
        samples = labelled_samples(root, self.class_names, split)
        if split == "train":
            samples = train_subset(samples, hp.try_to_train_items, hp.random_seed)
        dataset = ImageFolderDataset(samples, self.img_size, hp.on_bad_image, hp.max_image_pixels)
        if hp.data_cache:
            if fits_in_memory(len(samples), self.img_size):
                return TensorSplit(*load_split(dataset, cache_dir=root.parent / ".cache"))
            log.warning(
                "data_cache: the %s split (%d images at %s px) would take more than half the available "
                "memory decoded; reading its files per batch instead",
                split, len(samples), "x".join(map(str, self.img_size)),
            )  # fmt: skip
        return dataset

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> StatefulDataLoader:
        """torchdata's StatefulDataLoader: Lightning keeps its position in every checkpoint, so a run stopped
        mid-epoch (Ctrl-C, SIGTERM) resumes at the next batch of the same order."""
        if self.train_dataset is None:
            self.setup("fit")
        rank, world = self._rank_and_world()
        # epoch k's order depends on (seed, k) only: a resumed run continues the same sequence of orders
        order = EpochShuffle(self.train_dataset, num_replicas=world, rank=rank, seed=self.hparams.random_seed)
        with warnings.catch_warnings():  # torchdata 0.11 calls torch.set_vital, deprecated by torch 2.14
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
            return self._loader(self.train_dataset, order, StatefulDataLoader)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("validate")
        return self._evaluation_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        return self._evaluation_loader(self.test_dataset)

    def _evaluation_loader(self, dataset: ImageFolderDataset | TensorSplit) -> DataLoader:
        """Rank r of w scores images r, r + w, ...: each image exactly once across processes, unpadded, so
        synced metrics count every image once."""
        rank, world = self._rank_and_world()
        if len(dataset) < world:  # a rank without images would never join the metrics' sync
            raise DataError(
                f"an evaluation set of {len(dataset)} images cannot be shared by {world} processes: give it at "
                "least one image per process, or evaluate on one process (trainer.devices=1)."
            )
        return self._loader(dataset, range(rank, len(dataset), world))

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset: Dataset, order: Iterable[int], loader: type = DataLoader) -> DataLoader:
        hp = self.hparams
        # a generator of its own: creating an iterator then draws nothing from the global RNG (exact resume)
        generator = torch.Generator().manual_seed(hp.random_seed)
        if isinstance(dataset, TensorSplit):  # whole batches sliced from memory: no per-item work, no workers
            # the training order's batches pass Lightning's set_epoch on; evaluation shards have no epochs
            batches = EpochBatches if isinstance(order, EpochShuffle) else BatchSampler
            sampler = batches(order, hp.batch_size, drop_last=False)
            return loader(dataset, batch_size=None, sampler=sampler, generator=generator)
        return loader(
            dataset,
            sampler=order,
            batch_size=hp.batch_size,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            # pinned host memory only helps copies to a CUDA device the trainer actually uses
            pin_memory=isinstance(getattr(self.trainer, "accelerator", None), CUDAAccelerator),
            collate_fn=collate_labelled,
            generator=generator,
        )

    # ------------------------------------------------------------------ batch hooks

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches on the device; validation and test batches never, nor a bare tensor (the
        model summary's example input, which must not draw from the random state a resumed run replays)."""
        training = self.trainer is not None and self.trainer.training
        if not training or self.augment.is_identity or not isinstance(batch, (tuple, list)):
            return batch
        images, labels = batch
        return batch_augment(images, self.augment), labels

    # ------------------------------------------------------------------ checkpointed state

    def state_dict(self) -> dict[str, Any]:
        """The global random states (augmentation and dropout draw from torch's), saved in every checkpoint so
        a resumed run draws what the uninterrupted run would have. No numpy arrays, so Lightning's
        ``weights_only`` loading accepts them. CUDA's is left out: it would tie a checkpoint to one GPU count,
        and GPU kernels are not bit-exact anyway."""
        kind, keys, *rest = np.random.get_state()
        return {
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": [kind, keys.tolist(), *rest],
            "python_rng": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch_rng" in state_dict:
            torch.set_rng_state(state_dict["torch_rng"])
            kind, keys, *rest = state_dict["numpy_rng"]
            np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
            version, internal, gauss_next = state_dict["python_rng"]
            random.setstate((version, tuple(internal), gauss_next))  # a list in older checkpoints
