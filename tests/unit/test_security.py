"""Files from elsewhere cannot run code, exhaust memory or make digitcls write outside its output folder.

* A crafted checkpoint whose unpickling would create a marker file is refused by every entry point that
  reads a checkpoint (exit 2, one message saying how to convert a trusted file, no traceback) and the marker
  never appears; real checkpoints of a real Trainer still load and resume with ``weights_only=True``.
* A decompression bomb (a 90-byte PNG declaring 50,000 x 50,000 pixels) is skipped, checked from its header
  before decoding, in the folder path, the cache, predict and evaluate; the run goes on.
* Hostile file and folder names in a prediction folder: nothing is written outside the output folder,
  pre.csv reads back through pandas name for name, symlinks out of the folder are only read.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import ListConfig

from digitcls.checkpoints import main as convert_main
from digitcls.checkpoints import read_checkpoint
from digitcls.data.datamodule import DigitDataModule
from digitcls.data.images import BadImageWarning, read_image
from digitcls.errors import EXIT_USER_ERROR, BadImageError, CheckpointError
from digitcls.model.module import DigitClassifier, load_classifier
from digitcls.train import train
from tests.helpers import TINY_TRAIN, compose_train, crafted_checkpoint, run_in_process, save_checkpoint

TRAIN, PREDICT, EVALUATE, EXPORT = "digitcls.train", "digitcls.predict", "digitcls.evaluate", "digitcls.export"


# ----------------------------------------------------------------------------------------------- checkpoints


def test_the_crafted_checkpoint_really_runs_code_when_loaded_unsafely(tmp_path: Path) -> None:
    """The attack the tests below defend against is real: plain torch.load(weights_only=False) runs it."""
    marker = tmp_path / "ran"
    checkpoint = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def _train_args(ctx_data: Path, tmp: Path, *overrides: str) -> list[str]:
    paths = [f"{key}_path={ctx_data / key}" for key in ("train", "val", "test")]
    return ["+experiment=mbv3", *TINY_TRAIN, *paths, f"output_dir={tmp / 'run'}", *overrides]


def _resume_case(data: Path, tmp: Path, evil: Path) -> list[str]:
    (tmp / "run" / "checkpoints").mkdir(parents=True)
    shutil.copy(evil, tmp / "run" / "checkpoints" / "last.ckpt")
    return _train_args(data, tmp, "resume=true")


ENTRY_POINTS = {
    "train model_path": (TRAIN, "model_path", lambda d, t, e: _train_args(d, t, f"model_path={e}")),
    "train ckpt_path": (TRAIN, "ckpt_path", lambda d, t, e: _train_args(d, t, f"ckpt_path={e}")),
    "train resume=true": (TRAIN, "resume", _resume_case),
    "train pretrained": (TRAIN, "pretrained", lambda d, t, e: _train_args(d, t, f"pretrained={e}")),
    "evaluate": (EVALUATE, "model_path",
                 lambda d, t, e: [f"model_path={e}", f"eval_path={d / 'test'}", f"output_dir={t / 'eval'}"]),
    "predict": (PREDICT, "model_path",
                lambda d, t, e: [f"model_path={e}", f"test_path={d / 'test'}", f"output={t / 'out' / 'pre.csv'}"]),
    "export": (EXPORT, "model_path", lambda d, t, e: [f"model_path={e}", f"output={t / 'exported'}"]),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_crafted_checkpoint_is_refused_by_every_entry_point(
    entry: str, tiny_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command, key, argv_for = ENTRY_POINTS[entry]
    marker = tmp_path / "marker"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's switch to unsafe defaults: not obeyed

    status = run_in_process(command, argv_for(tiny_folders, tmp_path, evil), tmp_path / "hydra", monkeypatch)

    captured = capsys.readouterr()
    assert status == EXIT_USER_ERROR, captured.err[-2000:]
    message = captured.err.strip().splitlines()[-1]
    assert message.startswith(f"error: {key}: "), message
    assert "holds Python objects besides tensors" in message and "(exec)" in message
    assert "python -m digitcls.checkpoints" in message  # how to convert it, if trusted
    assert "Traceback" not in captured.out + captured.err
    assert not marker.exists()
    assert not (tmp_path / "exported.onnx").exists() and not (tmp_path / "out" / "pre.csv").exists()


def test_read_checkpoint_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"^ckpt_path: .*nothing.ckpt does not exist"):
        read_checkpoint(tmp_path / "nothing.ckpt", "ckpt_path")
    (tmp_path / "text.ckpt").write_text("not torch")
    with pytest.raises(CheckpointError, match=r"^model_path: .*text.ckpt could not be read by torch.load"):
        read_checkpoint(tmp_path / "text.ckpt", "model_path")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match=r"holds a Tensor, not a checkpoint"):
        read_checkpoint(tmp_path / "tensor.pt", "model_path")


def test_hyperparameters_cannot_build_a_huge_or_unknown_model(untrained_checkpoint: Path, tmp_path: Path) -> None:
    """Plain values can still lie: 200,000 class names for a 10-output head would allocate an 800 MB head
    before any weight is checked; an unknown hyperparameter would be a TypeError. Both are refused first."""
    saved = torch.load(untrained_checkpoint, weights_only=True)
    saved["hyper_parameters"]["class_names"] = [str(i) for i in range(200_000)]
    torch.save(saved, tmp_path / "huge.ckpt")
    with pytest.raises(CheckpointError, match="names 200000 classes but its last layer has 10 outputs"):
        load_classifier(tmp_path / "huge.ckpt")

    saved = torch.load(untrained_checkpoint, weights_only=True)
    saved["hyper_parameters"]["data_root"] = "data"
    torch.save(saved, tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match=r"hyperparameters this digitcls does not know: \['data_root'\]"):
        load_classifier(tmp_path / "unknown.ckpt")


def test_trusted_old_style_checkpoint_converts_and_then_loads(untrained_checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint whose hyperparameters hold OmegaConf and Path objects (as a script saving its Hydra config
    would) is refused; the conversion the message names gives a file that loads, with the same weights."""
    saved = torch.load(untrained_checkpoint, weights_only=True)
    saved["hyper_parameters"]["class_names"] = ListConfig(saved["hyper_parameters"]["class_names"])
    saved["callbacks"] = {"checkpoint": {"dirpath": tmp_path / "data"}}
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    with pytest.raises(CheckpointError, match="omegaconf"):
        load_classifier(old)

    convert_main([str(old), str(tmp_path / "converted.ckpt")])
    converted = read_checkpoint(tmp_path / "converted.ckpt", "model_path")
    assert converted["hyper_parameters"]["class_names"] == [str(d) for d in range(10)]
    assert converted["callbacks"]["checkpoint"]["dirpath"] == str(tmp_path / "data")
    model = load_classifier(tmp_path / "converted.ckpt")
    for name, tensor in saved["state_dict"].items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_convert_refuses_to_overwrite_its_source(untrained_checkpoint: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        convert_main([str(untrained_checkpoint), str(untrained_checkpoint)])
    assert exited.value.code == EXIT_USER_ERROR
    assert "not over" in capsys.readouterr().err


def test_real_trainer_checkpoints_load_safely_and_resume(tiny_folders: Path, tmp_path: Path) -> None:
    """A real run with EMA, early stopping, freezing, the plateau scheduler and the checkpoint callbacks writes
    files that read with weights_only=True, load as models, and resume (``resume=true``) to the next epoch."""
    paths = [f"{key}_path={tiny_folders / key}" for key in ("train", "val")]  # no test pass: not what is checked
    common = [*TINY_TRAIN, *paths, "test_path=null", "try_to_train_items=32", f"output_dir={tmp_path / 'run'}",
              "ema_decay=0.9",
              "scheduler=default-0.1-3", "early_stop_patient=3", "freeze_nonlinear_epoch=1"]
    first = train(compose_train(common))
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"} and len(checkpoints) == 2
    for path in checkpoints:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        saved = read_checkpoint(path, "test")
        assert {"averaging_state", "optimizer_states", "lr_schedulers", "callbacks"} <= set(saved)
        load_classifier(path)
    resumed = train(compose_train([*common, "epochs=2", "resume=true"]))
    assert first["epochs_run"] == 1 and resumed["epochs_run"] == 2
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", "test")["epoch"] == 1


# ------------------------------------------------------------------------------------------ image bombs


def png_bomb(path: Path, width: int = 50_000, height: int = 50_000) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` 8-bit grey pixels (7.5 GB as RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    return path


def test_the_bomb_is_one_for_opencv(tmp_path: Path) -> None:
    """Decoded directly, the bomb stops OpenCV with an assertion (the crash this guards against)."""
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    with pytest.raises(cv2.error, match="CV_IO_MAX_IMAGE_PIXELS"):
        cv2.imdecode(np.fromfile(bomb, np.uint8), cv2.IMREAD_UNCHANGED)


def test_pixel_limit_is_read_from_the_header_before_decoding(tmp_path: Path, monkeypatch) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    decoded: list[int] = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: decoded.append(1) or real_imdecode(data, flags))
    with pytest.raises(BadImageError, match=r"bomb.png declares 50000 x 50000 pixels, more than max_image_pixels"):
        read_image(bomb)
    assert decoded == []  # refused from the header: OpenCV never saw it

    # the limit applies to every format, whatever the header parser: a real 100 x 80 JPEG and BMP
    for suffix in (".jpg", ".bmp", ".png"):
        path = tmp_path / f"photo{suffix}"
        cv2.imwrite(str(path), np.full((80, 100, 3), 128, np.uint8))
        assert read_image(path, max_pixels=8000).shape == (80, 100, 3)
        with pytest.raises(BadImageError, match=r"declares 100 x 80 pixels, more than max_image_pixels=7999"):
            read_image(path, max_pixels=7999)


def test_opencv_assertion_becomes_a_bad_image(tmp_path: Path) -> None:
    """Above OpenCV's own limit (here: max_image_pixels raised past it), its assertion is a bad image too."""
    bomb = png_bomb(tmp_path / "bomb.png")
    with pytest.raises(BadImageError, match=r"bomb.png could not be decoded by OpenCV .*CV_IO_MAX_IMAGE_PIXELS"):
        read_image(bomb, max_pixels=3_000_000_000)


@pytest.mark.parametrize("data_cache", [False, True], ids=["folder path", "cache builder"])
def test_bomb_in_a_training_split_is_skipped_with_a_warning(tiny_folders: Path, data_cache: bool) -> None:
    png_bomb(tiny_folders / "train" / "3" / "bomb.png")
    real = sum(1 for _ in (tiny_folders / "train").rglob("*.png")) - 1
    module = DigitDataModule(tiny_folders / "train", tiny_folders / "val", None, img_size=(32, 32), batch_size=64, num_workers=0,
                             data_cache=data_cache)
    with pytest.warns(BadImageWarning, match="bomb.png declares 50000 x 50000"):
        module.setup("fit")
        seen = sum(len(labels) for _, labels in module.train_dataloader())
    assert seen == real


def test_bomb_in_a_prediction_folder_goes_to_pre_errors(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    test = tiny_folders / "test"
    png_bomb(test / "5" / "bomb.png")
    out = tmp_path / "out"
    argv = [f"model_path={untrained_checkpoint}", f"test_path={test}", f"output={out / 'pre.csv'}",
            f"errors_output={out / 'pre_errors.csv'}", f"grid_output={out / 'grid.png'}", "num_workers=0"]
    monkeypatch.setattr(sys, "argv", [PREDICT, *argv, f"hydra.run.dir={tmp_path / 'hydra'}"])
    from digitcls.predict import main

    main()  # returns normally: the run goes on
    predictions = pd.read_csv(out / "pre.csv")
    errors = pd.read_csv(out / "pre_errors.csv")
    assert len(predictions) == sum(1 for _ in test.rglob("*.png")) - 1
    assert errors.path.tolist() == ["5/bomb.png"]
    assert "declares 50000 x 50000 pixels, more than max_image_pixels=40000000" in errors.reason[0]
    assert "1 unreadable image(s)" in capsys.readouterr().out


def test_bomb_in_an_evaluation_folder_is_skipped(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    test = tiny_folders / "test"
    png_bomb(test / "5" / "bomb.png")
    monkeypatch.setattr(sys, "argv", [EVALUATE, f"model_path={untrained_checkpoint}", f"eval_path={test}",
                                      f"output_dir={tmp_path / 'eval'}", "num_workers=0",
                                      f"hydra.run.dir={tmp_path / 'hydra'}"])
    from digitcls.evaluate import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main()
    assert any("bomb.png declares 50000 x 50000" in str(w.message) for w in caught)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == sum(1 for _ in test.rglob("*.png")) - 1


# -------------------------------------------------------------------------------------- hostile names


HOSTILE_NAMES = [
    "..\u2215escape.png",  # looks like ../ (U+2215 DIVISION SLASH); hidden, as every dot-name is
    "a,b.png", 'quo"te.png', "new\nline.png", " leading space.png", "=1+1.png", "nan.png", "$\\x$.png",
    "with space/x y.png", "dots.../inner.png",
]


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_hostile_names_stay_inside_the_output_folder_and_round_trip(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    images = sorted((tiny_folders / "test").rglob("*.png"))
    folder = tmp_path / "incoming"
    for name, source in zip(HOSTILE_NAMES, images, strict=False):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    undecodable = os.fsdecode(os.fsencode(str(folder)) + b"/bad\xff.png")  # not UTF-8: a surrogate in Python
    shutil.copy(images[-1], undecodable)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(images[-2], outside / "secret.png")
    (folder / "link.png").symlink_to(outside / "secret.png")
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)
    out = tmp_path / "out"
    before = _tree(tmp_path)
    outside_before = {p: p.stat().st_mtime_ns for p in _tree(outside)}

    monkeypatch.setattr(sys, "argv", [PREDICT, f"model_path={untrained_checkpoint}", f"test_path={folder}",
                                      f"output={out / 'pre.csv'}", f"errors_output={out / 'pre_errors.csv'}",
                                      f"grid_output={out / 'predictions.png'}", "num_workers=0", "grid_size=64",
                                      f"hydra.run.dir={out / 'hydra'}"])
    from digitcls.predict import main

    main()
    from digitcls.inference import cache_path

    # the one file outside `out`: predict's export of the model beside the checkpoint (with onnxruntime)
    written = _tree(tmp_path) - before - {cache_path(untrained_checkpoint)}
    assert written and all(out in path.parents for path in written), written
    assert {p: p.stat().st_mtime_ns for p in _tree(outside)} == outside_before  # read, never written

    frame = pd.read_csv(out / "pre.csv", keep_default_na=False, dtype=str)
    expected = {name for name in HOSTILE_NAMES if not name.startswith(".")}
    expected |= {"bad\\udcff.png", "link.png", "linked_dir/secret.png"}
    assert set(frame.image_id) == expected
    assert len(frame) == len(expected) and not (out / "pre_errors.csv").exists()
    for image_id in expected - {"bad\\udcff.png"}:  # each id leads back to its file, through pandas
        assert (folder / image_id).is_file(), image_id
    assert (out / "predictions.png").stat().st_size > 1000


def test_odd_class_names_reach_every_evaluate_output(
    tiny_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class folders named with dots, spaces, commas, quotes and `$` (not mathtext in the figures) come back
    whole from per_class.csv and confusion_matrix.csv, and evaluate writes only into its output folder."""
    test = tiny_folders / "test"
    odd = {"0": "dots...", "1": "with space", "2": "a,b", "3": "$\\x$", "4": 'say "4"'}
    for digit, name in odd.items():
        (test / digit).rename(test / name)
    names = [odd.get(str(d), str(d)) for d in range(10)]
    checkpoint = save_checkpoint(
        DigitClassifier(model_name="mobilenetv3_small", class_names=names, img_size=(32, 32)), tmp_path / "odd.ckpt"
    )
    out = tmp_path / "eval"
    before = _tree(tmp_path)
    monkeypatch.setattr(sys, "argv", [EVALUATE, f"model_path={checkpoint}", f"eval_path={test}",
                                      f"output_dir={out}", "num_workers=0", f"hydra.run.dir={out}"])
    from digitcls.evaluate import main

    main()
    from digitcls.inference import cache_path

    # the one write outside: the checkpoint's own cached ONNX export, named by digitcls, not by any class
    assert all(out in path.parents for path in _tree(tmp_path) - before - {cache_path(checkpoint)})
    assert pd.read_csv(out / "per_class.csv", dtype={"class": str})["class"].tolist() == names
    assert pd.read_csv(out / "confusion_matrix.csv").columns.tolist()[1:] == names
    assert (out / "confusion_matrix.png").stat().st_size > 1000
