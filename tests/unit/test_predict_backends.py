"""`make predict` on onnxruntime (a cached export of the checkpoint) and on torch: the same pre.csv; the
cache is made once, reused, and remade when the checkpoint changes; predict starts without Lightning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module

from digitcls import inference
from digitcls.errors import CheckpointError
from digitcls.inference import load_predictor
from digitcls.predict import label_folder, predict
from tests.helpers import assert_same_answers, reference_answers, save_checkpoint

pytest.importorskip("onnxruntime", reason="the `export` extra is not installed")


def predict_cfg(overrides: list[str]):
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name="predict", overrides=overrides)


def run_predict(checkpoint: Path, folder: Path, out: Path) -> dict:
    return predict(predict_cfg([f"model_path={checkpoint}", f"test_path={folder}", f"output={out / 'pre.csv'}",
                                f"errors_output={out / 'pre_errors.csv'}", "grid_output=null", "batch_size=16",
                                "num_workers=2"]))


def decisive_model(seed: int) -> torch.nn.Module:
    """A random mobilenetv3_small whose head is scaled up: one class clearly ahead, whatever the image, and
    far from the trained checkpoint's answers (a changed checkpoint must show)."""
    from digitcls.model.module import DigitClassifier

    torch.manual_seed(seed)
    model = DigitClassifier(model_name="mobilenetv3_small", img_size=(32, 32)).eval()
    head = model.backbone.classifier[-1]
    torch.nn.init.normal_(head.weight, std=1.0)
    torch.nn.init.normal_(head.bias, std=1.0)
    return model


@pytest.fixture
def checkpoint(trained: Path) -> Path:
    """The trained checkpoint (answers that depend on the image), in this test's own folder."""
    return trained


@pytest.fixture
def export_count(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every export the cache makes, in order (the real export runs)."""
    made: list[Path] = []
    real = inference.export_cache

    def counting(checkpoint: Path, cache: Path, key: str) -> Path:
        made.append(checkpoint)
        return real(checkpoint, cache, key)

    monkeypatch.setattr(inference, "export_cache", counting)
    return made


@pytest.fixture
def no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the export extra were not installed: `import onnxruntime` fails."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def test_onnxruntime_and_torch_write_the_same_pre_csv(
    tiny_folders: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_onnx = run_predict(checkpoint, tiny_folders / "test", tmp_path / "onnx")
    with monkeypatch.context() as hidden:
        hidden.setitem(sys.modules, "onnxruntime", None)
        on_torch = run_predict(checkpoint, tiny_folders / "test", tmp_path / "torch")
    assert (on_onnx["backend"], on_torch["backend"]) == ("onnxruntime", "torch")
    by_onnx = pd.read_csv(tmp_path / "onnx" / "pre.csv", dtype={"label": str})
    by_torch = pd.read_csv(tmp_path / "torch" / "pre.csv", dtype={"label": str})
    assert len(by_onnx) == 50 and by_onnx.image_id.tolist() == by_torch.image_id.tolist()
    reference = reference_answers(checkpoint, tiny_folders / "test", by_onnx.image_id.tolist())
    for written in (by_onnx, by_torch):  # confidences written with 6 decimals: within the tolerance
        assert_same_answers(written.label.tolist(), written.confidence.to_numpy(), reference)


def test_the_export_is_made_once_and_reused(
    tiny_folders: Path, checkpoint: Path, export_count: list[Path]
) -> None:
    cache = checkpoint.with_name(checkpoint.name + ".onnx")
    first = load_predictor(checkpoint)
    assert first.backend == "onnxruntime" and cache.is_file() and export_count == [checkpoint]
    made_at = cache.stat().st_mtime_ns
    second = load_predictor(checkpoint)
    assert export_count == [checkpoint] and cache.stat().st_mtime_ns == made_at
    assert second.path == checkpoint and second.class_names == [str(d) for d in range(10)]
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    assert np.array_equal(first.probabilities(images), second.probabilities(images))


def test_a_changed_checkpoint_is_exported_again(
    checkpoint: Path, export_count: list[Path]
) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    before = load_predictor(checkpoint).probabilities(images)
    save_checkpoint(decisive_model(1), checkpoint)  # other weights, same name (as last.ckpt each epoch)
    after = load_predictor(checkpoint)
    assert len(export_count) == 2
    reference = load_predictor(checkpoint, backend="torch").probabilities(images)
    assert np.allclose(after.probabilities(images), reference, atol=1e-5)
    assert not np.allclose(before, reference, atol=1e-3)
    os.utime(checkpoint, ns=(1, 1))  # the same bytes with another time: cannot tell, so remade
    load_predictor(checkpoint)
    assert len(export_count) == 3
    key = json.loads(inference.source_key(checkpoint))
    assert key == {"size": checkpoint.stat().st_size, "mtime_ns": 1, "format": inference.FORMAT}


def test_a_damaged_export_is_made_again(checkpoint: Path, export_count: list[Path]) -> None:
    cache = inference.cache_path(checkpoint)
    cache.write_bytes(b"not an onnx file")
    assert load_predictor(checkpoint).backend == "onnxruntime"
    assert len(export_count) == 1 and cache.stat().st_size > 100_000


def test_without_onnxruntime_the_checkpoint_runs_on_torch(
    checkpoint: Path, no_onnxruntime: None, export_count: list[Path]
) -> None:
    predictor = load_predictor(checkpoint)
    assert predictor.backend == "torch" and export_count == []
    assert not inference.cache_path(checkpoint).exists()


def test_an_onnx_file_without_onnxruntime_says_how_to_install_it(tmp_path: Path, no_onnxruntime: None) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"model\.onnx is an ONNX file.*pip install -e \.\[export\]"):
        load_predictor(tmp_path / "model.onnx")


def test_a_failed_export_falls_back_to_torch_with_a_warning(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(checkpoint: Path, cache: Path, key: str) -> Path:
        raise RuntimeError("operator foo is not supported")

    monkeypatch.setattr(inference, "export_cache", unsupported)
    with pytest.warns(UserWarning, match="running .* on torch: exporting it to ONNX failed .*operator foo"):
        assert load_predictor(checkpoint).backend == "torch"
    with pytest.raises(RuntimeError, match="operator foo"), warnings.catch_warnings():
        warnings.simplefilter("error")
        load_predictor(checkpoint, backend="onnxruntime")


def test_decoding_threads_keep_the_order_and_the_errors(tiny_folders: Path, checkpoint: Path) -> None:
    test = tiny_folders / "test"
    (test / "4" / "empty.png").write_bytes(b"")
    predictor = load_predictor(checkpoint)
    inline, inline_errors = label_folder(predictor, test, batch_size=7, num_workers=0)
    threaded, threaded_errors = label_folder(predictor, test, batch_size=7, num_workers=3)
    assert len(inline) == 50 and inline.equals(threaded)
    assert inline_errors.path.tolist() == threaded_errors.path.tolist() == ["4/empty.png"]


def run_python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_importing_predict_imports_neither_lightning_nor_torch(tmp_path: Path) -> None:
    loaded = run_python("""
        import sys
        import digitcls.predict
        print(sorted(name for name in ("lightning", "torch", "torchvision", "pandas", "matplotlib") if name in sys.modules))
    """, tmp_path)
    assert loaded == "[]"


def test_predict_on_a_cached_export_never_imports_torch(
    tiny_folders: Path, checkpoint: Path, tmp_path: Path
) -> None:
    load_predictor(checkpoint)  # makes the export, as the first `make predict` does
    loaded = run_python(f"""
        import sys
        from hydra import compose, initialize_config_module
        from digitcls.predict import predict
        with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
            cfg = compose(config_name="predict", overrides=["model_path={checkpoint}",
                          "test_path={tiny_folders / 'test'}", "output={tmp_path / 'pre.csv'}", "grid_size=4",
                          "grid_output={tmp_path / 'grid.png'}", "errors_output={tmp_path / 'errors.csv'}"])
        summary = predict(cfg)
        print(summary["backend"], summary["images"], "torch" in sys.modules, "lightning" in sys.modules)
    """, tmp_path)
    assert loaded == "onnxruntime 50 False False"
    assert len(pd.read_csv(tmp_path / "pre.csv")) == 50
