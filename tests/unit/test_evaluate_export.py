"""evaluate's metrics against a hand count; ONNX/TorchScript exports agree with torch; MNIST-style preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from digitcls.data.images import load_input, to_chw_tensor
from digitcls.errors import DataError
from digitcls.evaluate import evaluate, score_folder
from digitcls.export import export
from digitcls.inference import load_predictor
from digitcls.predict import label_folder
from digitcls.preprocess import to_mnist_style
from tests.helpers import PROBABILITY_TOLERANCE, assert_same_answers, reference_answers, render_digit


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def test_evaluate_matches_a_hand_count(tiny_folders: Path, trained: Path, tmp_path: Path) -> None:
    test = tiny_folders / "test"
    _, rows = score_folder(load_predictor(trained), test, batch_size=8)  # evaluate's loader and backend
    image_ids = [str(Path(p).relative_to(test)) for p in rows.path]
    assert sorted(image_ids) == sorted(str(p.relative_to(test)) for p in test.rglob("*.png"))
    labels, confidences = reference_answers(trained, test, image_ids)  # torch, image by image
    assert_same_answers([str(i) for i in rows.predicted], rows.confidence.to_numpy(), (labels, confidences))

    out = tmp_path / "eval"
    summary = evaluate(compose_cfg("evaluate", [f"model_path={trained}", f"eval_path={test}", f"output_dir={out}",
                                                "num_workers=0", "batch_size=8"]))
    truth = pd.Series([i.split("/")[0] for i in image_ids])
    predicted = pd.Series(labels)
    assert summary["n_images"] == 50
    assert summary["accuracy"] == pytest.approx((truth == predicted).mean())
    assert summary["accuracy"] >= 0.4  # the digits it learnt: far above chance, so the pixels are the right ones
    table = pd.read_csv(out / "per_class.csv", dtype={"class": str})
    for name, recall in zip(table["class"], table["recall"], strict=True):  # right / support, by hand
        mine = truth == name
        assert recall == pytest.approx((predicted[mine] == name).mean())
    assert summary["recall_macro"] == pytest.approx(table.recall.mean())
    confusion = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert confusion.to_numpy().sum() == 50 and np.trace(confusion.to_numpy()) == round(summary["accuracy"] * 50)
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == summary["accuracy"]
    for picture in ("confusion_matrix.png", "worst_mistakes.png"):
        assert (out / picture).stat().st_size > 1000


def test_class_mapping_comes_from_the_checkpoint(tiny_folders: Path, untrained_checkpoint: Path) -> None:
    test = tiny_folders / "test"
    for name in ("0", "1", "2"):  # a folder with only some classes: still mapped by name
        for file in (test / name).iterdir():
            file.unlink()
        (test / name).rmdir()
    values, rows = score_folder(load_predictor(untrained_checkpoint), test)
    assert set(rows.true) == set(range(3, 10))
    (test / "ten").mkdir()
    cv2.imwrite(str(test / "ten" / "x.png"), np.zeros((28, 28), np.uint8))
    with pytest.raises(DataError, match="ten"):
        score_folder(load_predictor(untrained_checkpoint), test)


def test_onnx_and_torchscript_agree_with_torch(tiny_folders: Path, trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the `export` extra is not installed")
    onnx_path, script_path = export(compose_cfg("export", [f"model_path={trained}", "format=all",
                                                           f"output={tmp_path / 'model'}"]))
    assert onnx_path.name == "model.onnx" and script_path.name == "model.pt"
    test = tiny_folders / "test"
    image_ids = sorted(str(p.relative_to(test)) for p in test.rglob("*.png"))
    images = torch.stack([to_chw_tensor(load_input(test / i, (32, 32))) for i in image_ids])
    reference = load_predictor(trained, backend="torch").probabilities(images)
    from_onnx = load_predictor(onnx_path)
    assert from_onnx.class_names == [str(d) for d in range(10)] and from_onnx.img_size == (32, 32)
    scripted = torch.jit.load(str(script_path))
    for name, probabilities in (("onnx", from_onnx.probabilities(images)),
                                ("torchscript", scripted(images.float() / 255).softmax(1).detach())):
        assert torch.allclose(probabilities, reference, atol=PROBABILITY_TOLERANCE, rtol=0), name
    by_onnx, _ = label_folder(from_onnx, test)  # predict's own decoding, on the export
    assert_same_answers(by_onnx.label.tolist(), by_onnx.confidence.to_numpy(),
                        reference_answers(trained, test, by_onnx.image_id.tolist()))


@pytest.mark.parametrize("digit", [1, 4, 7, 8])
def test_mnist_style_inverts_crops_fits_and_centres(digit: int) -> None:
    out = to_mnist_style(render_digit(digit))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0].max() < 40 and out[:, 0].max() < 40  # black background, like MNIST
    ys, xs = np.nonzero(out > 40)
    assert ys.max() - ys.min() + 1 <= 22 and xs.max() - xs.min() + 1 <= 22  # fits 20x20 (+ blur)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) >= 16  # and fills it
    moments = cv2.moments(out)
    assert abs(moments["m10"] / moments["m00"] - 14) < 1.5 and abs(moments["m01"] / moments["m00"] - 14) < 1.5


def test_mnist_style_keeps_dark_backgrounds_and_blank_images() -> None:
    dark = 255 - render_digit(3, jpeg=False)  # already light ink on dark
    assert to_mnist_style(dark)[0].max() < 40
    assert to_mnist_style(np.full((50, 50, 3), 200, np.uint8)).max() == 0


def test_a_checkpoint_holding_an_int_img_size_loads_as_a_pair(untrained_checkpoint: Path, tmp_path: Path) -> None:
    """Checkpoints written before the schema parsed img_size hold an int; they still load and export."""
    from digitcls.model.module import load_classifier

    checkpoint = torch.load(untrained_checkpoint, weights_only=True)
    checkpoint["hyper_parameters"]["img_size"] = 28
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert load_classifier(tmp_path / "old.ckpt").img_size == (28, 28)
    assert load_predictor(tmp_path / "old.ckpt", backend="torch").img_size == (28, 28)
