"""Listing and labelling image folders: hidden and stray files, natural order, mapping by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from digitcls.data.folders import discover_classes, labelled_samples, unlabelled_samples
from digitcls.errors import DataError


def touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def rel(root: Path, paths: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_listing_recursive_any_case_hidden_and_strays_skipped(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "a/10.png",
        "a/2.PNG",
        "a/1.Jpg",
        "a/sub/3.jpeg",
        "b/4.BMP",
        "b/5.JPEG",
        ".DS_Store",
        "a/.DS_Store",
        "a/.hidden.png",
        ".ipynb_checkpoints/6.png",
        "a/.cache/7.png",
        "a/notes.txt",
        "a/8.gif",
        "a/png",
    )
    assert rel(tmp_path, unlabelled_samples(tmp_path)) == [
        "a/1.Jpg",
        "a/2.PNG",
        "a/10.png",
        "a/sub/3.jpeg",
        "b/4.BMP",
        "b/5.JPEG",
    ]


def test_listing_survives_a_symlink_loop(tmp_path: Path) -> None:
    touch(tmp_path, "a/1.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    assert rel(tmp_path, unlabelled_samples(tmp_path)) == ["a/1.png"]


def test_classes_natural_order_folders_only(tmp_path: Path) -> None:
    touch(tmp_path, "10/a.png", "2/a.png", "1/a.png", ".DS_Store", "readme.txt", ".hidden/a.png")
    assert discover_classes(tmp_path) == ["1", "2", "10"]


def test_no_class_folders_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class sub-folders"):
        discover_classes(tmp_path)
    with pytest.raises(DataError, match="does not exist.*make data"):
        discover_classes(tmp_path / "missing")


def test_labels_come_from_the_training_class_list_not_the_split(tmp_path: Path) -> None:
    """A split missing class '1' (or holding a stray .DS_Store) must not shift the other labels."""
    touch(tmp_path, "val/0/a.png", "val/2/b.png", "val/2/deep/c.png", "val/.DS_Store")
    samples = labelled_samples(tmp_path / "val", ["0", "1", "2"], "val")
    assert [(p.relative_to(tmp_path / "val").as_posix(), label) for p, label in samples] == [
        ("0/a.png", 0),
        ("2/b.png", 2),
        ("2/deep/c.png", 2),
    ]


def test_unknown_class_names_class_and_split(tmp_path: Path) -> None:
    touch(tmp_path, "test/0/a.png", "test/7/b.png")
    with pytest.raises(DataError) as caught:
        labelled_samples(tmp_path / "test", ["0", "1"], "test")
    assert "test split" in str(caught.value) and "'7'" in str(caught.value) and "0, 1" in str(caught.value)


def test_image_outside_class_folder_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "0/a.png", "loose.png")
    with pytest.raises(DataError, match="loose.png is not inside a class folder"):
        labelled_samples(tmp_path, ["0"], "train")


def test_split_without_images_names_the_path(tmp_path: Path) -> None:
    touch(tmp_path, "val/0/notes.txt")
    with pytest.raises(DataError, match=f"val folder {tmp_path / 'val'} contains no images"):
        labelled_samples(tmp_path / "val", ["0"], "val")
    with pytest.raises(DataError, match="does not exist"):
        unlabelled_samples(tmp_path / "nowhere")


def test_unlabelled_samples_any_depth(tmp_path: Path) -> None:
    touch(tmp_path, "x.png", "a/b/y.jpg", "a/.z.png")
    assert rel(tmp_path, unlabelled_samples(tmp_path)) == ["a/b/y.jpg", "x.png"]
