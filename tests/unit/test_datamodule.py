"""DigitDataModule on tiny folders: labels, shapes, subsets, shuffling, augmentation stages, bad images, predict."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from digitcls.data.datamodule import DigitDataModule, collate_labelled
from digitcls.data.images import BadImageWarning
from digitcls.errors import BadImageError, DataError

AUGMENT = {"degrees": 10, "translate": 0.1, "scale": [0.9, 1.1], "shear": 0}


def make_dm(root: Path, **kwargs) -> DigitDataModule:
    args = {"img_size": (32, 32), "batch_size": 16, "num_workers": 0, **kwargs}
    return DigitDataModule(root / "train", root / "val", root / "test", **args)


def all_labels(loader) -> list[int]:
    return [int(label) for _, labels in loader for label in labels]


def test_setup_fit_classes_sizes_and_batches(tiny_folders: Path) -> None:
    dm = make_dm(tiny_folders, img_size=[20, 36])
    dm.setup("fit")
    assert dm.class_names == [str(d) for d in range(10)]
    assert len(dm.train_dataset) == 200 and len(dm.val_dataset) == 50 and dm.test_dataset is None
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (16, 3, 20, 36) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    dm.setup("test")
    assert len(dm.test_dataset) == 50
    loader = dm.train_dataloader()
    assert len(loader) == math.ceil(200 / 16) and not loader.drop_last
    assert not loader.pin_memory and not loader.persistent_workers
    assert sorted(all_labels(loader)) == sorted(label for _, label in dm.train_dataset.samples)


def test_labels_follow_folder_names(tiny_folders: Path) -> None:
    dm = make_dm(tiny_folders)
    dm.setup("fit")
    for path, label in dm.train_dataset.samples + dm.val_dataset.samples:
        assert dm.class_names[label] == path.parent.name


def test_natural_class_order_and_val_mapped_by_name(tmp_path: Path, tiny_folders: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for source, name in (("2", "2"), ("1", "10")):
            shutil.copytree(tiny_folders / split / source, root / split / name)
    (root / "train" / ".DS_Store").write_bytes(b"junk")
    shutil.rmtree(root / "val" / "2")  # val lacks class '2': '10' must still be label 1
    dm = DigitDataModule(root / "train", root / "val", None, img_size=(28, 28))
    dm.setup("fit")
    assert dm.class_names == ["2", "10"]
    assert {label for _, label in dm.val_dataset.samples} == {1}


def test_unknown_val_class_names_class_and_split(tiny_folders: Path) -> None:
    shutil.copytree(tiny_folders / "val" / "3", tiny_folders / "val" / "three")
    with pytest.raises(DataError, match="val split: class folder 'three'"):
        make_dm(tiny_folders).setup("fit")


def test_missing_train_path_names_key_and_make_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="^train_path: .*does not exist.*make data"):
        make_dm(tmp_path / "nothing").setup("fit")


def test_class_names_from_checkpoint_map_an_eval_folder(tiny_folders: Path) -> None:
    shutil.rmtree(tiny_folders / "train")  # evaluation needs no training folder when class names are known
    for name in ("0", "1", "2"):
        shutil.rmtree(tiny_folders / "test" / name)
    dm = make_dm(tiny_folders, class_names=[str(d) for d in range(10)])
    dm.setup("test")
    assert {label for _, label in dm.test_dataset.samples} == set(range(3, 10))
    dm = make_dm(tiny_folders, class_names=["7", "8", "9"])
    with pytest.raises(DataError, match="test split: class folder '3'.*7, 8, 9"):
        dm.setup("test")


def test_try_to_train_items_is_a_seeded_subset(tiny_folders: Path) -> None:
    def subset(seed: int, items: int) -> list[Path]:
        dm = make_dm(tiny_folders, try_to_train_items=items, random_seed=seed)
        dm.setup("fit")
        return [path for path, _ in dm.train_dataset.samples]

    assert len(subset(0, 37)) == 37 and subset(0, 37) == subset(0, 37)
    assert subset(0, 37) != subset(1, 37)
    assert len(subset(0, 0)) == 200 and len(subset(0, 10_000)) == 200


def test_train_shuffle_is_seeded(tiny_folders: Path) -> None:
    def order(seed: int) -> list[int]:
        dm = make_dm(tiny_folders, random_seed=seed, img_size=(16, 16), batch_size=200)
        return next(iter(dm.train_dataloader()))[1].tolist()

    assert order(5) == order(5)
    assert order(5) != order(6)
    dm = make_dm(tiny_folders, img_size=(16, 16), batch_size=200)
    dm.setup("fit")
    val_labels = [label for _, label in dm.val_dataset.samples]
    assert next(iter(dm.val_dataloader()))[1].tolist() == val_labels  # val is not shuffled


def test_augmentation_only_while_training(tiny_folders: Path) -> None:
    dm = make_dm(tiny_folders, augment=AUGMENT)
    images, labels = next(iter(make_dm(tiny_folders).val_dataloader()))
    for training, augmented in ((False, False), (True, True)):
        dm.trainer = SimpleNamespace(training=training)
        out, out_labels = dm.on_after_batch_transfer((images, labels), 0)
        assert out_labels is labels
        assert (out.dtype == torch.float32) is augmented
    off = make_dm(tiny_folders, augment={"degrees": 0, "translate": 0, "scale": 0, "shear": 0})
    off.trainer = SimpleNamespace(training=True)
    assert off.on_after_batch_transfer((images, labels), 0)[0] is images


class _Recorder(L.LightningModule):
    """Records the dtype of the batches each stage receives."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 10)
        self.seen: dict[str, set[torch.dtype]] = {"train": set(), "val": set(), "test": set()}

    def _step(self, batch, stage: str) -> torch.Tensor:
        images, labels = batch
        self.seen[stage].add(images.dtype)
        x = images.float().mean(dim=(2, 3)) if images.dtype == torch.uint8 else images.mean(dim=(2, 3))
        return nn.functional.cross_entropy(self.layer(x), labels)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_trainer_augments_train_batches_only(tiny_folders: Path) -> None:
    dm = make_dm(tiny_folders, img_size=(16, 16), augment=AUGMENT)
    model = _Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert model.seen == {"train": {torch.float32}, "val": {torch.uint8}, "test": {torch.uint8}}


def break_two_images(root: Path) -> tuple[Path, Path]:
    empty, corrupt = root / "3" / "0_empty.png", root / "5" / "0_corrupt.png"
    empty.write_bytes(b"")
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return empty, corrupt


def test_bad_images_skipped_with_one_warning_each(tiny_folders: Path) -> None:
    empty, corrupt = break_two_images(tiny_folders / "train")
    dm = make_dm(tiny_folders, img_size=(16, 16))
    dm.setup("fit")
    assert len(dm.train_dataset) == 202
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # two epochs: still one warning per file
            assert len(all_labels(dm.train_dataloader())) == 200
    messages = [str(w.message) for w in caught if issubclass(w.category, BadImageWarning)]
    assert len(messages) == 2
    assert any(str(empty) in m and "empty" in m for m in messages)
    assert any(str(corrupt) in m and "corrupt" in m for m in messages)


def test_bad_image_error_policy_names_the_file(tiny_folders: Path) -> None:
    empty, _ = break_two_images(tiny_folders / "val")
    dm = make_dm(tiny_folders, on_bad_image="error")
    dm.setup("fit")
    index = [path for path, _ in dm.val_dataset.samples].index(empty)
    with pytest.raises(BadImageError, match=f"{empty}.*on_bad_image=skip"):
        dm.val_dataset[index]


def test_collate_of_only_bad_items_is_none() -> None:
    assert collate_labelled([None, None]) is None


