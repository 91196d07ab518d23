"""Image folders: list the files, name the classes, label the samples.

Class index = position of the folder name in the natural-sorted class folders of the *training*
split; other splits are mapped by name, never by their own listing (a stray file or a missing class
would otherwise shift every label).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from natsort import natsorted

from digitcls.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})


def _walk(folder: Path, seen: set[str]) -> Iterator[Path]:
    """Every image under ``folder`` (recursive, symlinks followed), hidden files and folders skipped, in natural
    order ('2.png' before '10.png'); sorting each folder's names is much faster than sorting all paths at once
    (55,000 files: ~1 s instead of ~4 s)."""
    real = os.path.realpath(folder)
    if real in seen:  # a symlink loop must not recurse forever
        return
    seen.add(real)
    with os.scandir(folder) as scan:
        entries = natsorted((entry for entry in scan if not entry.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():  # DirEntry caches the type: no stat per file
            yield from _walk(folder / entry.name, seen)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield folder / entry.name


def discover_classes(train_root: str | Path) -> list[str]:
    """Class names: the natural-sorted names of the (non-hidden) sub-folders of the training split."""
    train_root = Path(train_root)
    if not train_root.is_dir():
        raise DataError(f"training folder {train_root} does not exist. Run `make data`, or set train_path.")
    classes = natsorted(e.name for e in os.scandir(train_root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(
            f"training folder {train_root} has no class sub-folders; expected {train_root}/<class>/<image>, "
            "e.g. data/train/3/17.png. Run `make data` for MNIST."
        )
    return classes


def labelled_samples(
    root: str | Path, class_names: list[str], split_name: str, classes_from: str = "the training classes"
) -> list[tuple[Path, int]]:
    """(image path, class index) for every image under ``root``/<class>/ (any depth), classes mapped by name;
    ``classes_from`` says where ``class_names`` came from, for the error about an unknown class."""
    root = Path(root)
    index = {name: i for i, name in enumerate(class_names)}
    samples: list[tuple[Path, int]] = []
    prefix = len(root.parts)
    for path in unlabelled_samples(root, split_name):
        parts = path.parts[prefix:]
        if len(parts) < 2:
            raise DataError(
                f"{split_name} split: image {path} is not inside a class folder; "
                f"put each image under {root}/<class>/ (classes: {', '.join(class_names)})."
            )
        if parts[0] not in index:
            raise DataError(
                f"{split_name} split: class folder {parts[0]!r} ({root / parts[0]}) is not one of "
                f"{classes_from} ({', '.join(class_names)}). Remove or rename it, or train with it."
            )
        samples.append((path, index[parts[0]]))
    return samples


def unlabelled_samples(root: str | Path, split_name: str = "prediction") -> list[Path]:
    """Every image under ``root`` (any depth), for prediction; ``split_name`` names the folder in errors."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{split_name} folder {root} does not exist.")
    images = list(_walk(root, set()))
    if not images:
        raise DataError(
            f"{split_name} folder {root} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))}, any case)."
        )
    return images
