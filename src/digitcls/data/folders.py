"""Image folders: list the files, name the classes, label the samples.

Class index = position of the folder name in the natural-sorted class folders of the *training*
split; other splits are mapped by name, never by their own listing (a stray file or a missing class
would otherwise shift every label).
"""

from __future__ import annotations

import os
from pathlib import Path

from natsort import natsorted, ns

from digitcls.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})


def _hidden(name: str) -> bool:
    return name.startswith(".")


def is_image_file(path: Path) -> bool:
    return not _hidden(path.name) and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(root: str | Path) -> list[Path]:
    """Every image under ``root`` (recursive, symlinks followed), hidden files and folders skipped,
    in natural order ('2.png' before '10.png')."""
    root = Path(root)
    found: list[Path] = []
    seen_dirs: set[str] = set()  # real paths already walked: a symlink loop must not recurse forever
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames.clear()
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        found.extend(p for p in (Path(dirpath, f) for f in filenames) if is_image_file(p))
    return natsorted(found, alg=ns.PATH)


def discover_classes(train_root: str | Path) -> list[str]:
    """Class names: the natural-sorted names of the (non-hidden) sub-folders of the training split."""
    train_root = Path(train_root)
    if not train_root.is_dir():
        raise DataError(f"training folder {train_root} does not exist. Run `make data`, or set train_path.")
    classes = natsorted(e.name for e in os.scandir(train_root) if e.is_dir() and not _hidden(e.name))
    if not classes:
        raise DataError(
            f"training folder {train_root} has no class sub-folders; expected {train_root}/<class>/<image>, "
            "e.g. data/train/3/17.png. Run `make data` for MNIST."
        )
    return classes


def labelled_samples(root: str | Path, class_names: list[str], split_name: str) -> list[tuple[Path, int]]:
    """(image path, class index) for every image under ``root``/<class>/, classes mapped by name."""
    root = Path(root)
    images = _require_images(root, split_name)
    index = {name: i for i, name in enumerate(class_names)}
    samples: list[tuple[Path, int]] = []
    for path in images:
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            raise DataError(
                f"{split_name} split: image {path} is not inside a class folder; "
                f"put each image under {root}/<class>/ (classes: {', '.join(class_names)})."
            )
        if parts[0] not in index:
            raise DataError(
                f"{split_name} split: class folder {parts[0]!r} ({root / parts[0]}) is not one of the "
                f"training classes ({', '.join(class_names)}). Remove or rename it, or train with it."
            )
        samples.append((path, index[parts[0]]))
    return samples


def unlabelled_samples(root: str | Path) -> list[Path]:
    """Every image under ``root`` (any depth), for prediction."""
    return _require_images(Path(root), "prediction")


def _require_images(root: Path, split_name: str) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{split_name} folder {root} does not exist.")
    images = list_images(root)
    if not images:
        raise DataError(
            f"{split_name} folder {root} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))}, any case)."
        )
    return images
