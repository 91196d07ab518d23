"""`make predict`: pre.csv keyed by relative path, class names, batched, atomic; bad inputs are messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from digitcls import atomic
from digitcls.errors import CheckpointError, DataError
from digitcls.inference import load_predictor
from digitcls.predict import label_folder, predict
from tests.helpers import assert_same_answers, reference_answers


def predict_cfg(overrides: list[str]):
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name="predict", overrides=overrides)


@pytest.fixture
def outputs(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    return [f"output={out / 'pre.csv'}", f"errors_output={out / 'pre_errors.csv'}",
            f"grid_output={out / 'predictions.png'}", "num_workers=0", "batch_size=16"]


def test_pre_csv_has_relative_ids_class_names_and_natural_order(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, outputs: list[str]
) -> None:
    test = tiny_folders / "test"
    in_3, in_7 = sorted((test / "3").glob("*.png"))[0], sorted((test / "7").glob("*.png"))[0]
    shutil.copy(in_3, test / "7" / in_3.name)  # the same file name in two folders
    summary = predict(predict_cfg([f"model_path={untrained_checkpoint}", f"test_path={test}", *outputs]))
    frame = pd.read_csv(tmp_path / "out" / "pre.csv", dtype={"label": str})
    assert list(frame.columns) == ["image_id", "label", "confidence"]
    assert len(frame) == summary["images"] == sum(1 for _ in test.rglob("*.png"))
    assert frame.image_id.is_unique and {f"3/{in_3.name}", f"7/{in_3.name}", f"7/{in_7.name}"} <= set(frame.image_id)
    assert set(frame.label) <= {str(d) for d in range(10)}
    assert frame.confidence.between(0, 1).all()
    in_folder_3 = [i for i in frame.image_id if i.startswith("3/")]
    assert in_folder_3 == sorted(in_folder_3, key=lambda i: int(Path(i).stem))  # natural: 2 before 10
    assert (tmp_path / "out" / "predictions.png").stat().st_size > 1000
    assert not (tmp_path / "out" / "pre_errors.csv").exists()


def test_labels_agree_with_a_direct_model_call(tiny_folders: Path, trained: Path) -> None:
    test = tiny_folders / "test"
    predictions, _ = label_folder(load_predictor(trained), test, batch_size=7)  # batches that split classes
    assert sorted(predictions.image_id) == sorted(str(p.relative_to(test)) for p in test.rglob("*.png"))
    assert_same_answers(predictions.label.tolist(), predictions.confidence.to_numpy(),
                        reference_answers(trained, test, predictions.image_id.tolist()))


def test_unreadable_images_are_listed_and_do_not_stop_the_run(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, outputs: list[str]
) -> None:
    test = tiny_folders / "test"
    (test / "1" / "empty.png").write_bytes(b"")
    (test / "2" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    predict(predict_cfg([f"model_path={untrained_checkpoint}", f"test_path={test}", *outputs]))
    errors = pd.read_csv(tmp_path / "out" / "pre_errors.csv")
    assert sorted(errors.path) == ["1/empty.png", "2/broken.jpg"]
    assert errors.reason.str.len().gt(0).all()
    assert len(pd.read_csv(tmp_path / "out" / "pre.csv")) == 50


def test_empty_folder_is_a_message_and_writes_no_csv(
    untrained_checkpoint: Path, tmp_path: Path, outputs: list[str]
) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="contains no images"):
        predict(predict_cfg([f"model_path={untrained_checkpoint}", f"test_path={tmp_path / 'empty'}", *outputs]))
    assert not (tmp_path / "out" / "pre.csv").exists()


def test_interrupted_write_keeps_the_old_pre_csv(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, outputs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = tmp_path / "out" / "pre.csv"
    old.parent.mkdir()
    old.write_text("image_id,label,confidence\nold.png,1,0.5\n")

    def half_then_crash(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_text("image_id,label,conf")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        predict(predict_cfg([f"model_path={untrained_checkpoint}", f"test_path={tiny_folders / 'test'}", *outputs]))
    assert old.read_text() == "image_id,label,confidence\nold.png,1,0.5\n"
    assert [p.name for p in old.parent.iterdir()] == ["pre.csv"]  # no temp file left behind


def test_no_trained_model_says_how_to_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            outputs: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="make train"):
        predict(predict_cfg([f"test_path={tmp_path}", *outputs]))


def test_newest_run_best_checkpoint_is_the_default(
    tiny_folders: Path, untrained_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    outputs: list[str],
) -> None:
    from digitcls.runs import write_summary

    run = tmp_path / "outputs" / "2026-01-01" / "00-00-00"
    run.mkdir(parents=True)
    write_summary(run, {"best_checkpoint": str(untrained_checkpoint)})
    monkeypatch.chdir(tmp_path)
    summary = predict(predict_cfg([f"test_path={tiny_folders / 'test'}", *outputs]))
    assert summary["model_path"] == str(untrained_checkpoint)


def test_preprocess_mnist_runs_on_photos(untrained_checkpoint: Path, tmp_path: Path) -> None:
    photo = np.full((200, 300, 3), 230, np.uint8)
    cv2.putText(photo, "7", (150, 160), cv2.FONT_HERSHEY_SIMPLEX, 5, (20, 20, 20), 14)
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "seven.jpg"), photo)
    predictions, errors = label_folder(load_predictor(untrained_checkpoint), tmp_path / "photos", preprocess="mnist")
    assert list(predictions.image_id) == ["seven.jpg"] and errors.empty


def test_module_writes_csv_with_six_decimals(tmp_path: Path) -> None:
    path = atomic.write_csv_atomically(
        pd.DataFrame({"image_id": ["a.png"], "label": ["1"], "confidence": [0.123456789]}), tmp_path / "p.csv")
    assert path.read_text().splitlines()[1] == "a.png,1,0.123457"
