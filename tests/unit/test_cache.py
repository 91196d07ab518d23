"""The in-memory path serves the folder path's exact pixels and labels, and rebuilds when files change."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from digitcls.data import cache
from digitcls.data.cache import TensorSplit, load_split
from digitcls.data.datamodule import DigitDataModule, ImageFolderDataset
from digitcls.data.folders import discover_classes, labelled_samples


def split_of(root: Path, img_size: tuple[int, int] = (32, 32)) -> ImageFolderDataset:
    classes = discover_classes(root / "train")
    return ImageFolderDataset(labelled_samples(root / "val", classes, "val"), img_size)


def test_same_pixels_and_labels_as_the_folder_path(tiny_folders: Path, tmp_path: Path) -> None:
    folder = split_of(tiny_folders, (24, 40))
    images, labels = load_split(folder, tmp_path / "cache")
    assert images.dtype == torch.uint8 and images.shape == (len(folder), 3, 24, 40)
    for i in range(len(folder)):
        image, label = folder[i]
        assert torch.equal(images[i], image) and int(labels[i]) == label


def test_second_load_reads_the_cache_and_a_changed_file_rebuilds_it(
    tiny_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = split_of(tiny_folders)
    load_split(folder, tmp_path / "cache")
    decoded: list[int] = []
    real_decode = cache._decode_all
    monkeypatch.setattr(cache, "_decode_all", lambda split: decoded.append(1) or real_decode(split))
    load_split(folder, tmp_path / "cache")
    assert decoded == []  # served from disk

    path, _ = folder.samples[0]
    cv2.imwrite(str(path), np.full((28, 28), 255, np.uint8))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    images, _ = load_split(split_of(tiny_folders), tmp_path / "cache")
    assert decoded == [1]
    assert int(images[0].min()) == 255


def test_damaged_cache_is_rebuilt(tiny_folders: Path, tmp_path: Path) -> None:
    folder = split_of(tiny_folders)
    load_split(folder, tmp_path / "cache")
    for file in (tmp_path / "cache").glob("*.pt"):
        file.write_bytes(b"not a tensor file")
    images, labels = load_split(folder, tmp_path / "cache")
    assert len(images) == len(labels) == len(folder)


def test_bad_images_follow_the_folder_policy(tiny_folders: Path, tmp_path: Path) -> None:
    bad = tiny_folders / "val" / "3" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    folder = split_of(tiny_folders)
    with pytest.warns(UserWarning, match="broken.png"):
        images, _ = load_split(folder, tmp_path / "cache")
    assert len(images) == len(folder) - 1


def test_datamodule_serves_whole_batches_from_memory(tiny_folders: Path) -> None:
    kwargs = dict(train_path=tiny_folders / "train", val_path=tiny_folders / "val",
                  test_path=tiny_folders / "test", img_size=(32, 32), batch_size=64, num_workers=0, random_seed=3)
    cached = DigitDataModule(**kwargs, data_cache=True)
    plain = DigitDataModule(**kwargs, data_cache=False)
    cached.setup("fit")
    plain.setup("fit")
    assert isinstance(cached.train_dataset, TensorSplit)
    assert (tiny_folders / ".cache").is_dir()
    batches = list(cached.train_dataloader())
    assert [len(y) for _, y in batches] == [64, 64, 64, 8]
    seen = torch.cat([y for _, y in batches])
    # each image once per epoch
    assert sorted(seen.tolist()) == sorted(label for _, label in plain.train_dataset.samples)
    val_cached = torch.cat([x for x, _ in cached.val_dataloader()])
    val_plain = torch.cat([x for x, _ in plain.val_dataloader()])
    assert torch.equal(val_cached, val_plain)  # same order and pixels outside training


def test_a_split_too_large_for_memory_falls_back_to_files(
    tiny_folders: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from digitcls.data import cache

    # 200 training images at 32 px take 614,400 bytes decoded; pretend 1 MB is available
    monkeypatch.setattr(cache, "available_memory", lambda: 1_000_000)
    dm = DigitDataModule(train_path=tiny_folders / "train", val_path=tiny_folders / "val",
                         test_path=tiny_folders / "test", img_size=(32, 32), batch_size=64, num_workers=0,
                         data_cache=True)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert not isinstance(dm.train_dataset, TensorSplit)  # 614 kB > half of 1 MB: per-file path
    assert isinstance(dm.val_dataset, TensorSplit)  # 50 images fit
    assert "data_cache: the train split (200 images at 32x32 px)" in caplog.text
