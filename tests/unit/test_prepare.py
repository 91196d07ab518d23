"""IDX -> image folders: parsing and its errors, raw-file lookup and download, split, idempotence, atomicity."""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from torchvision.datasets.utils import calculate_md5

from digitcls.data import prepare
from digitcls.data.prepare import (
    TEST_LABELS,
    TRAIN_IMAGES,
    ensure_prepared,
    prepare_dataset,
    read_idx_gz,
    stratified_val_indices,
)
from digitcls.errors import ConfigError, DataError
from tests.helpers import idx_bytes, write_idx_gz

SPLITS = ("train", "val", "test")


def png_files(split_dir: Path) -> set[str]:
    return {p.relative_to(split_dir).as_posix() for p in split_dir.rglob("*.png")}


def prepare_tiny(raw: Path, out: Path, **kwargs) -> dict[str, int]:
    return prepare_dataset(raw, out, val_size=kwargs.pop("val_size", 50), download=False, **kwargs)


# ----------------------------------------------------------------------------- IDX parsing


def test_read_idx_gz_round_trip(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx_gz(write_idx_gz(tmp_path / TRAIN_IMAGES, images)), images)
    np.testing.assert_array_equal(read_idx_gz(write_idx_gz(tmp_path / TEST_LABELS, labels)), labels)


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [
        (TRAIN_IMAGES, b"", ["not a valid IDX images file", "magic number empty", "00000803"]),
        (TRAIN_IMAGES, b"\x01\x00\x08\x01" + b"\x00" * 8, ["magic number 01000801"]),
        (TRAIN_IMAGES, b"\x00\x00\x07\x01" + b"\x00" * 8, ["magic number 00000701"]),
        (TRAIN_IMAGES, b"\x00\x00\x08\x03\x00\x00", ["magic number 00000803", "6 bytes"]),
        (TRAIN_IMAGES, idx_bytes(np.zeros((4, 5, 5), np.uint8))[:-7], ["magic number 00000803", "109 bytes"]),
        (TRAIN_IMAGES, idx_bytes(np.zeros((4, 5, 5), np.uint8)) + b"\x00", ["magic number 00000803", "117 bytes"]),
        (TRAIN_IMAGES, idx_bytes(np.zeros((4,), np.uint8)), ["not a valid IDX images file", "dimension"]),
        (TEST_LABELS, idx_bytes(np.zeros((4, 5, 5), np.uint8)), ["not a valid IDX labels file", "00000801"]),
    ],
    ids=["empty", "bad-magic", "bad-type", "short-header", "truncated", "trailing", "labels-as-images", "images-as-labels"],
)
def test_bad_idx_files_name_the_file(tmp_path: Path, name: str, data: bytes, words: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DataError) as caught:
        read_idx_gz(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for word in words:
        assert word in message


def test_corrupt_and_truncated_gzip_name_the_file(tmp_path: Path) -> None:
    good = gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    for name, data in (("truncated.gz", good[: len(good) // 2]), ("garbage.gz", b"not gzip at all")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError, match=f"{name}.*corrupt or truncated gzip"):
            read_idx_gz(path)


# ----------------------------------------------------------------------------- raw files


def test_raw_files_found_in_torchvision_layout(tiny_idx_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "MNIST").mkdir(parents=True)
    tiny_idx_dir.rename(root / "MNIST" / "raw")
    counts = prepare_tiny(root, tmp_path / "out")
    assert counts == {"train": 150, "val": 50, "test": 50}


def test_missing_raw_files_no_download_names_both_ways_out(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        prepare_dataset(tmp_path / "empty", tmp_path / "out", download=False)
    message = str(caught.value)
    for word in (
        "MNIST/raw",
        "train-images-idx3-ubyte.gz",
        "--raw-dir",
        "RAW_DIR=",
        "network",
        "--no-download",
    ):
        assert word in message


def test_offline_download_failure_names_both_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision's real download code runs; only the network is cut, as on an offline machine."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as caught:
        prepare_dataset(tmp_path / "raw", tmp_path / "out")
    message = str(caught.value)
    assert "downloading them failed" in message and "name resolution" in message
    for word in ("MNIST/raw", "--raw-dir", "RAW_DIR=", "network"):
        assert word in message
    assert not (tmp_path / "out" / "train").exists()


def test_file_shaped_like_mnist_with_unknown_md5_is_refused(
    tiny_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        prepare.OFFICIAL_SHAPES, TEST_LABELS, (50,)
    )  # the tiny file now "claims" to be MNIST's
    with pytest.raises(DataError) as caught:
        prepare_tiny(tiny_idx_dir, tmp_path / "out")
    message = str(caught.value)
    assert str(tiny_idx_dir / TEST_LABELS) in message and "MD5" in message and "--no-md5-check" in message
    assert prepare_tiny(tiny_idx_dir, tmp_path / "out", md5_check=False)["test"] == 50


def test_known_md5_names_the_dataset_in_the_manifest(
    tiny_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    md5 = calculate_md5(tiny_idx_dir / TRAIN_IMAGES)
    monkeypatch.setitem(prepare.KNOWN_MD5, (TRAIN_IMAGES, md5), "FashionMNIST")
    prepare_tiny(tiny_idx_dir, tmp_path / "out")
    assert prepare.read_manifest(tmp_path / "out")["dataset"] == "FashionMNIST"


def test_mismatched_image_and_label_counts(tiny_idx_dir: Path, tmp_path: Path) -> None:
    (tiny_idx_dir / TEST_LABELS).write_bytes(gzip.compress(idx_bytes(np.zeros(49, np.uint8))))
    with pytest.raises(DataError, match="50 images but .*49 labels"):
        prepare_tiny(tiny_idx_dir, tmp_path / "out")


@pytest.mark.parametrize("val_size", [0, -1, 200, 1000])
def test_bad_val_size(tiny_idx_dir: Path, tmp_path: Path, val_size: int) -> None:
    with pytest.raises(ConfigError, match="--val-size"):
        prepare_tiny(tiny_idx_dir, tmp_path / "out", val_size=val_size)


# ----------------------------------------------------------------------------- split and pixels


def test_stratified_split_keeps_class_shares_and_exact_size() -> None:
    labels = np.repeat(np.arange(3), [700, 200, 100])
    val = stratified_val_indices(labels, 101, seed=0)
    assert len(val) == 101 and len(np.unique(val)) == 101
    assert np.bincount(labels[val]).tolist() in ([71, 20, 10], [70, 21, 10], [70, 20, 11])


def test_split_is_seeded() -> None:
    labels = np.repeat(np.arange(10), 50)
    first = stratified_val_indices(labels, 40, seed=0)
    assert np.array_equal(first, stratified_val_indices(labels, 40, seed=0))
    assert not np.array_equal(first, stratified_val_indices(labels, 40, seed=1))


def test_prepare_layout_counts_and_pixels(
    tiny_idx_dir: Path, tiny_idx_arrays: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert prepare_tiny(tiny_idx_dir, out) == {"train": 150, "val": 50, "test": 50}
    for split, source in (("train", "train"), ("val", "train"), ("test", "test")):
        images, labels = tiny_idx_arrays[f"{source}_images"], tiny_idx_arrays[f"{source}_labels"]
        for path in (out / split).rglob("*.png"):
            n = int(path.stem)
            assert path.parent.name == str(labels[n])
            np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), images[n])
    val = png_files(out / "val")
    assert not val & png_files(out / "train")
    assert len(val | png_files(out / "train")) == 200
    assert [len(list((out / "val" / str(d)).iterdir())) for d in range(10)] == [5] * 10  # stratified
    manifest = prepare.read_manifest(out)
    assert manifest["complete"] and manifest["dataset"] == "IDX" and manifest["seed"] == 0
    assert set(manifest["raw_files"]) == set(prepare.RAW_FILES)
    assert sorted(p.name for p in out.iterdir()) == [
        ".prepare.lock",
        ".prepared.json",
        "test",
        "train",
        "val",
    ]


def test_same_seed_same_split_other_seed_other_split(tiny_idx_dir: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare_tiny(tiny_idx_dir, tmp_path / name, seed=seed)
    assert png_files(tmp_path / "a" / "val") == png_files(tmp_path / "b" / "val")
    assert png_files(tmp_path / "a" / "val") != png_files(tmp_path / "c" / "val")


# ----------------------------------------------------------------------------- idempotence, atomicity


def test_second_run_does_nothing_and_says_so(
    tiny_idx_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    prepare_tiny(tiny_idx_dir, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    caplog.set_level(logging.INFO, logger=prepare.__name__)
    started = time.perf_counter()
    assert prepare_tiny(tiny_idx_dir, out) == {"train": 150, "val": 50, "test": 50}
    assert time.perf_counter() - started < 2
    assert "up to date" in caplog.text and "nothing to do" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_other_seed_or_damaged_folder_is_rebuilt(tiny_idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_tiny(tiny_idx_dir, out)
    first_val = png_files(out / "val")
    prepare_tiny(tiny_idx_dir, out, seed=1)
    assert png_files(out / "val") != first_val
    next((out / "test").rglob("*.png")).unlink()  # a user deleted a file: counts no longer match the manifest
    assert prepare_tiny(tiny_idx_dir, out, seed=1)["test"] == 50
    assert len(png_files(out / "test")) == 50


def test_up_to_date_without_raw_files(tiny_idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_tiny(tiny_idx_dir, out)
    assert prepare_tiny(tmp_path / "gone", out) == {"train": 150, "val": 50, "test": 50}


def test_crash_while_writing_leaves_nothing_and_next_run_succeeds(
    tiny_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    calls = itertools.count()
    real_write = cv2.imwrite

    def crash_after_100(path: str, image: np.ndarray) -> bool:
        if next(calls) >= 100:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the write
        return real_write(path, image)

    monkeypatch.setattr(prepare.cv2, "imwrite", crash_after_100)
    with pytest.raises(KeyboardInterrupt):
        prepare_tiny(tiny_idx_dir, out)
    assert sorted(p.name for p in out.iterdir()) == [".prepare.lock"]  # no split, no temp folder, no manifest
    monkeypatch.setattr(prepare.cv2, "imwrite", real_write)
    assert prepare_tiny(tiny_idx_dir, out) == {"train": 150, "val": 50, "test": 50}


def test_crash_while_swapping_is_repaired_by_next_run(
    tiny_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    prepare_tiny(tiny_idx_dir, out, seed=0)
    real_replace = os.replace

    def die_on_val(src, dst) -> None:
        if Path(dst).name == "val" and Path(src).parent.name == prepare.TMP_DIR:
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(prepare.os, "replace", die_on_val)
    with pytest.raises(OSError, match="killed"):
        prepare_tiny(tiny_idx_dir, out, seed=1)  # new train is in place, old val is not yet replaced
    monkeypatch.setattr(prepare.os, "replace", real_replace)
    assert not prepare.read_manifest(out)["complete"]
    prepare_tiny(tiny_idx_dir, out, seed=1)
    train, val = png_files(out / "train"), png_files(out / "val")
    assert len(train) == 150 and len(val) == 50 and not train & val


def test_stale_temp_folder_of_a_killed_run_is_removed(tiny_idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / prepare.TMP_DIR / "train" / "3").mkdir(parents=True)
    (out / prepare.TMP_DIR / "train" / "3" / "7.png").write_bytes(b"half")
    prepare_tiny(tiny_idx_dir, out)
    assert not (out / prepare.TMP_DIR).exists()


def test_folders_not_written_by_prepare_are_never_replaced(tiny_idx_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "train" / "mine").mkdir(parents=True)
    with pytest.raises(DataError, match="not written by `make data`"):
        prepare_tiny(tiny_idx_dir, out)
    assert (out / "train" / "mine").is_dir()


# ----------------------------------------------------------------------------- ensure_prepared


def test_ensure_prepared_does_nothing_when_folders_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for split in SPLITS:
        (tmp_path / "elsewhere" / split).mkdir(parents=True)
    monkeypatch.setattr(prepare, "prepare_dataset", lambda *a, **k: pytest.fail("must not prepare"))
    ensure_prepared(*(tmp_path / "elsewhere" / s for s in SPLITS), raw_dir=tmp_path / "no-raw")


def test_ensure_prepared_prepares_missing_standard_folders(tiny_idx_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ensure_prepared(data / "train", data / "val", data / "test", tiny_idx_dir, val_size=50)
    assert prepare.read_manifest(data)["counts"] == {"train": 150, "val": 50, "test": 50}


def test_ensure_prepared_elsewhere_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        ensure_prepared(tmp_path / "a" / "train", tmp_path / "b" / "val", tmp_path / "c" / "test", tmp_path)
    message = str(caught.value)
    assert message.startswith("train_path:") and "make data" in message and "val_path" in message
    (tmp_path / "a" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="^val_path: .*make data"):
        ensure_prepared(tmp_path / "a" / "train", tmp_path / "b" / "val", None, tmp_path)


# ----------------------------------------------------------------------------- CLI


def test_cli_arguments(tiny_idx_dir: Path, tmp_path: Path) -> None:
    prepare.main(
        [
            "--raw-dir",
            str(tiny_idx_dir),
            "--out-dir",
            str(tmp_path / "out"),
            "--val-size",
            "20",
            "--seed",
            "3",
            "--no-download",
            "--no-md5-check",
        ]
    )
    manifest = prepare.read_manifest(tmp_path / "out")
    assert manifest["counts"] == {"train": 180, "val": 20, "test": 50} and manifest["seed"] == 3
