"""`python -m digitcls.data.prepare` (`make data`): MNIST IDX files -> lossless PNG folders (docs/data.md).

``out_dir/{train,val,test}/<label>/<n>.png`` (n: index in the IDX file) plus the manifest ``.prepared.json``
that makes a rerun with the same inputs a no-op; the splits are built in a temporary folder, then renamed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.progress import track

from digitcls import atomic
from digitcls.cli import friendly_errors
from digitcls.errors import ConfigError, DataError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
RAW_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
# the shapes of the official MNIST-family files: a file with these dimensions must have a known MD5
OFFICIAL_SHAPES = dict(zip(RAW_FILES, [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)], strict=True))
# (file name, md5) -> dataset: the checksums torchvision's MNIST, FashionMNIST and KMNIST downloads check;
# filled on first use, since importing torchvision takes seconds and an up-to-date check needs none of it
KNOWN_MD5: dict[tuple[str, str], str] = {}
SPLITS = ("train", "val", "test")
MANIFEST = ".prepared.json"
MANIFEST_VERSION = 1
TMP_DIR = ".prepare-tmp"  # built here, renamed into place when complete
CHUNK = 1000  # images per thread-pool task: large enough to amortise the task overhead


# --------------------------------------------------------------------------- raw files


def read_idx_gz(path: Path) -> np.ndarray:
    """A gzip-compressed IDX file, decompressed and decoded by torchvision's MNIST code (which reads only
    uncompressed files, so it gets a copy in a temporary folder: the raw folder may be read-only)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file
    from torchvision.datasets.utils import extract_archive

    kind, reader = ("images", read_image_file) if "-images-" in path.name else ("labels", read_label_file)
    with tempfile.TemporaryDirectory(prefix="digitcls-idx-") as scratch:
        try:
            plain = extract_archive(str(path), scratch)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(
                f"{path}: corrupt or truncated gzip file ({error}). Delete it so it is downloaded again, "
                "or copy an intact file."
            ) from None
        try:
            return reader(plain).numpy()
        except (AssertionError, ValueError, TypeError, RuntimeError) as error:
            with open(plain, "rb") as stream:
                magic = stream.read(4).hex() or "empty"
            detail = f"; {error}" if str(error) else ""
            raise DataError(
                f"{path}: not a valid IDX {kind} file (magic number {magic}, {os.path.getsize(plain):,} bytes "
                f"uncompressed{detail}); MNIST's {kind} start with {'00000803' if kind == 'images' else '00000801'} "
                "and hold exactly the bytes their dimensions need. Replace the file (delete it to download it again)."
            ) from None


def locate_raw_files(raw_dir: Path) -> dict[str, Path] | None:
    """The four raw files, from the first of <raw_dir>/MNIST/raw and <raw_dir> that holds all four."""
    for folder in (raw_dir / "MNIST" / "raw", raw_dir):
        if all((folder / name).is_file() for name in RAW_FILES):
            return {name: folder / name for name in RAW_FILES}
    return None


def _missing_raw_message(raw_dir: Path, why: str) -> str:
    return (
        f"the MNIST raw files are not in {raw_dir / 'MNIST' / 'raw'} (nor directly in {raw_dir}) and {why}. "
        f"Either copy the four IDX files ({', '.join(RAW_FILES)}) into {raw_dir / 'MNIST' / 'raw'}, "
        "or point at the folder holding them with --raw-dir DIR (`make data RAW_DIR=DIR`; train: raw_dir=DIR); "
        "or connect to the network and run again to download them (torchvision, MD5-checked)."
    )


def download_raw_files(raw_dir: Path, download: bool) -> dict[str, Path]:
    """torchvision's own MNIST download: mirrors, MD5 check, and nothing fetched for files already intact."""
    if not download:
        raise DataError(_missing_raw_message(raw_dir, "downloading is off (--no-download)"))
    from torchvision.datasets import MNIST

    log.info("downloading MNIST into %s with torchvision", raw_dir / "MNIST" / "raw")
    try:
        MNIST(root=str(raw_dir), train=False, download=True)  # train=False: loads only the small test set
    except (RuntimeError, OSError) as error:
        reason = " ".join(str(error).split())[:300]
        raise DataError(_missing_raw_message(raw_dir, f"downloading them failed ({reason})")) from None
    files = locate_raw_files(raw_dir)
    if files is None:  # e.g. only uncompressed files in MNIST/raw: torchvision then fetches nothing
        raise DataError(_missing_raw_message(raw_dir, "the download did not produce them"))
    return files


def raw_fingerprint(files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Each file's MD5 and size. The MD5 is torchvision's ``calculate_md5``, not imported from there:
    ``import torchvision`` costs seconds that the "already up to date" check must not pay."""
    fingerprint = {}
    for name, path in files.items():
        with path.open("rb") as file:  # streamed: another IDX dataset's files may be large
            md5 = hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
        fingerprint[name] = {"md5": md5, "size": path.stat().st_size}
    return fingerprint


def load_raw(
    files: dict[str, Path], fingerprint: dict[str, dict[str, Any]], md5_check: bool
) -> tuple[dict[str, np.ndarray], str]:
    """Decode and validate the four files; returns the arrays and the dataset's name (or 'IDX')."""
    arrays = {name: read_idx_gz(path) for name, path in files.items()}
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        if len(arrays[images]) != len(arrays[labels]):
            raise DataError(
                f"{files[images]} has {len(arrays[images]):,} images but {files[labels]} has "
                f"{len(arrays[labels]):,} labels."
            )
    if not md5_check:
        return arrays, "IDX"
    if not KNOWN_MD5:
        from torchvision.datasets import KMNIST, MNIST, FashionMNIST

        KNOWN_MD5.update({(n, d): k.__name__ for k in (MNIST, FashionMNIST, KMNIST) for n, d in k.resources})
    datasets: set[str] = set()
    for name, path in files.items():
        md5 = fingerprint[name]["md5"]
        dataset = KNOWN_MD5.get((name, md5))
        if dataset is None and arrays[name].shape == OFFICIAL_SHAPES[name]:
            raise DataError(
                f"{path}: MD5 {md5} matches none of the checksums torchvision uses for {name} (MNIST, "
                "Fashion-MNIST, KMNIST): the file is damaged or altered. Delete it to download it again, or copy "
                "an intact file; for another IDX dataset with these file names pass --no-md5-check."
            )
        datasets |= {dataset} if dataset else set()
    if len(datasets) > 1:
        raise DataError(
            f"the raw files in {files[TRAIN_IMAGES].parent} mix datasets ({', '.join(sorted(datasets))})."
        )
    return arrays, datasets.pop() if datasets else "IDX"


# --------------------------------------------------------------------------- split and write


def stratified_val_indices(labels: np.ndarray, val_size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded validation sample with each class's share of ``labels`` (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * val_size / len(labels)
    take = np.floor(quotas).astype(int)
    remainder = val_size - int(take.sum())
    take[np.argsort(-(quotas - take), kind="stable")[:remainder]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))


def _write_pngs(jobs: list[tuple[str, np.ndarray]]) -> None:
    for path, image in jobs:
        if not cv2.imwrite(path, image):
            raise DataError(f"could not write {path}: check free disk space and permissions.")


def write_split(
    images: np.ndarray, labels: np.ndarray, indices: np.ndarray, split_dir: Path
) -> dict[str, int]:
    """Write ``images[indices]`` as split_dir/<label>/<index>.png with a thread pool (cv2 releases the GIL);
    returns the image count per label."""
    names = labels[indices].astype(str)
    values, counts = np.unique(names, return_counts=True)
    for name in values:
        (split_dir / name).mkdir(parents=True, exist_ok=True)
    jobs = [
        (os.path.join(split_dir, name, f"{i}.png"), images[i]) for name, i in zip(names, indices, strict=True)
    ]
    chunks = [jobs[s : s + CHUNK] for s in range(0, len(jobs), CHUNK)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        written = pool.map(_write_pngs, chunks)  # re-raises the first error
        list(track(written, description=f"writing {split_dir.name:5}", total=len(chunks)))
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


# --------------------------------------------------------------------------- manifest and folders


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _up_to_date(
    manifest: dict[str, Any] | None, out_dir: Path, val_size: int, seed: int, fingerprint: dict | None
) -> bool:
    """The manifest describes these inputs and the folders on disk still hold what it counted."""
    expected = {"complete": True, "version": MANIFEST_VERSION, "val_size": val_size, "seed": seed}
    if fingerprint is not None:
        expected["raw_files"] = fingerprint
    if not manifest or any(manifest.get(key) != value for key, value in expected.items()):
        return False
    # a missing folder counts 0 images, and a complete split never has 0
    return manifest.get("counts") == {s: sum(1 for _ in (out_dir / s).glob("*/*.png")) for s in SPLITS}


@contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Serialise runs on one out_dir (e.g. every DDP rank calling ensure_prepared): the later ones then
    find the data up to date. Without fcntl (Windows) runs are not serialised."""
    with (out_dir / ".prepare.lock").open("w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


# --------------------------------------------------------------------------- API


def prepare_dataset(
    raw_dir: str | Path,
    out_dir: str | Path,
    val_size: int = 5000,
    seed: int = 0,
    download: bool = True,
    md5_check: bool = True,
) -> dict[str, int]:
    """Turn the four IDX files into out_dir/{train,val,test}/<label>/<n>.png; returns the image count per split."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if val_size <= 0:
        raise ConfigError(
            f"--val-size: must be a positive whole number, got {val_size!r}; e.g. --val-size 5000."
        )
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir):
        shutil.rmtree(out_dir / TMP_DIR, ignore_errors=True)  # left by an interrupted run
        manifest = read_manifest(out_dir)
        files = locate_raw_files(raw_dir)
        fingerprint = raw_fingerprint(files) if files else None  # None: compare the counts only
        if _up_to_date(manifest, out_dir, val_size, seed, fingerprint):
            why = "same raw files, val_size and seed;" if files else "raw files not found,"
            log.info("%s is up to date (%s nothing to do): %s", out_dir, why, _counts_text(manifest))
            return dict(manifest["counts"])  # type: ignore[index]
        if files is None:
            files = download_raw_files(raw_dir, download)
            fingerprint = raw_fingerprint(files)
        foreign = [out_dir / s for s in SPLITS if (out_dir / s).exists()] if manifest is None else []
        if foreign:  # never replace split folders that `make data` did not write
            raise DataError(
                f"{', '.join(map(str, foreign))} already exist(s) but {out_dir / MANIFEST} does not, so they "
                "were not written by `make data`; move them away (or delete them), or prepare into another "
                "--out-dir."
            )
        arrays, dataset = load_raw(files, fingerprint, md5_check)
        manifest = _build(arrays, out_dir, {"version": MANIFEST_VERSION, "dataset": dataset,
                                            "raw_files": fingerprint, "val_size": val_size, "seed": seed})
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        atomic.write_json(out_dir / MANIFEST, manifest)
    log.info(
        "prepared %s from %s into %s in %.1f s: %s",
        dataset,
        files[TRAIN_IMAGES].parent,
        out_dir,
        manifest["seconds"],
        _counts_text(manifest),
    )
    return dict(manifest["counts"])


def _build(arrays: dict[str, np.ndarray], out_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the three splits into a temporary folder, then rename them into place; returns the full manifest."""
    labels, val_size = arrays[TRAIN_LABELS], manifest["val_size"]
    if val_size >= len(labels):
        raise ConfigError(f"--val-size {val_size} must be smaller than the {len(labels):,} training images.")
    val = stratified_val_indices(labels, val_size, manifest["seed"])
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    test = np.arange(len(arrays[TEST_LABELS]))
    tmp = out_dir / TMP_DIR
    try:
        class_counts = {
            "train": write_split(arrays[TRAIN_IMAGES], labels, train, tmp / "train"),
            "val": write_split(arrays[TRAIN_IMAGES], labels, val, tmp / "val"),
            "test": write_split(arrays[TEST_IMAGES], arrays[TEST_LABELS], test, tmp / "test"),
        }
        manifest = {**manifest, "class_counts": class_counts, "complete": False,
                    "counts": {split: sum(counts.values()) for split, counts in class_counts.items()}}
        # marked incomplete while swapping: a crash there leaves folders the next run knows it may replace
        atomic.write_json(out_dir / MANIFEST, manifest)
        for split in SPLITS:
            target = out_dir / split
            if target.exists() or target.is_symlink():  # moved aside, deleted with tmp (a symlink: unlinked)
                os.replace(target, tmp / f"old-{split}")
            os.replace(tmp / split, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**manifest, "complete": True}


def _counts_text(manifest: dict[str, Any] | None) -> str:
    counts = (manifest or {}).get("counts", {})
    return ", ".join(f"{split} {counts.get(split, 0):,}" for split in SPLITS) + " images"


def ensure_prepared(
    train_path: str | Path | None,
    val_path: str | Path | None,
    test_path: str | Path | None,
    raw_dir: str | Path,
    val_size: int = 5000,
) -> None:
    """Called by train: nothing to do when the split folders exist; prepare them (``make data``'s defaults)
    when they are the missing train/val/test folders of one parent; otherwise a DataError naming the key."""
    keys = ("train_path", "val_path", "test_path")
    given = {key: Path(p) for key, p in zip(keys, (train_path, val_path, test_path), strict=True) if p}
    missing = [key for key, path in given.items() if not path.is_dir()]
    if not missing:
        return
    parents = {path.absolute().parent for path in given.values()}
    standard = "train_path" in given and all(path.name == key[: -len("_path")] for key, path in given.items())
    if standard and len(parents) == 1:
        parent = parents.pop()
        log.info("%s missing: preparing MNIST from %s into %s", ", ".join(missing), raw_dir, parent)
        prepare_dataset(raw_dir, parent, val_size=val_size)
        return
    key = missing[0]
    others = "; also missing: " + ", ".join(f"{k}={given[k]}" for k in missing[1:]) if missing[1:] else ""
    raise DataError(
        f"{key}: folder {given[key]} does not exist{others}. Run `make data` to prepare MNIST into data/, "
        f"or set {key}=<a folder with one sub-folder per class>. (Data is prepared automatically only when "
        "train_path, val_path and test_path are the train, val and test folders of one parent folder.)"
    )


# --------------------------------------------------------------------------- CLI


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m digitcls.data.prepare",
        description="MNIST-style IDX files -> lossless PNG folders out/{train,val,test}/<label>/<n>.png.",
    )
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path("data/raw"),
        help="where the *-ubyte.gz files are (or <raw-dir>/MNIST/raw); default: data/raw",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("data"), help="where to write the splits; default: data"
    )
    parser.add_argument(
        "--val-size", type=int, default=5000, help="validation images taken from train (stratified)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="fail instead of downloading missing raw files",
    )
    parser.add_argument(
        "--md5-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="files with MNIST's dimensions must match a torchvision MD5 (default: on)",
    )
    args = parser.parse_args(argv)
    prepare_dataset(args.raw_dir, args.out_dir, args.val_size, args.seed, args.download, args.md5_check)


if __name__ == "__main__":
    main()
