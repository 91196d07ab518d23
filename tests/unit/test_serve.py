"""`make serve`'s parts in this process: safe defaults, a taken port named, image headers read before decoding,
and the LitAPI's own steps giving predict's answers (the running server: tests/e2e/test_serve.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_module

pytest.importorskip("litserve", reason="the serve extra is not installed: pip install -e '.[serve]'")
requests = pytest.importorskip("requests", reason="the serve extra is not installed: pip install -e '.[serve]'")

from digitcls.data.images import TooManyPixelsError, declared_size, decode_image  # noqa: E402
from digitcls.errors import BadImageError, ConfigError  # noqa: E402
from digitcls.inference import load_predictor  # noqa: E402
from digitcls.predict import label_folder  # noqa: E402
from digitcls.schema import validated  # noqa: E402
from digitcls.serve.server import check_port_free  # noqa: E402
from tests.helpers import cli_env, pixel_bomb, varied_checkpoint  # noqa: E402


def serve_cfg(overrides: list[str]):
    with initialize_config_module(config_module="digitcls.conf", version_base="1.3"):
        return compose(config_name="serve", overrides=overrides)


def test_defaults_are_local_and_bounded() -> None:
    cfg = validated(serve_cfg([]), "serve")
    assert cfg.host == "127.0.0.1" and cfg.max_image_pixels == 40_000_000
    assert 1 <= cfg.max_batch_size <= 1024 and cfg.max_request_bytes <= 20_000_000


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port: {port} on 127.0.0.1 cannot be used"):
            check_port_free("127.0.0.1", port)


STOPPING = textwrap.dedent("""
    import ctypes, os, signal
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a program
    from digitcls.serve.stopping import stop_on_signals
    received = stop_on_signals()
    print("SIGHUP still ignored:", signal.getsignal(signal.SIGHUP) is signal.SIG_IGN)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except KeyboardInterrupt:
        print("KeyboardInterrupt on", received)
    child = os.fork()
    if child == 0:  # as LitServe's uvicorn process and manager start
        death_signal = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(death_signal))  # PR_GET_PDEATHSIG
        default = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        os._exit(0 if default and death_signal.value == signal.SIGTERM else 1)
    print("forked child:", os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_stop_signals_take_the_ctrl_c_path_and_forked_children_exit_with_the_server() -> None:
    """In a fresh process (the fork hooks stay for the process's life): SIGTERM raises KeyboardInterrupt, a
    signal ignored at start stays ignored, and a forked child gets default handlers and a parent-death signal."""
    done = subprocess.run([sys.executable, "-c", STOPPING], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == [
        "SIGHUP still ignored: True",
        "KeyboardInterrupt on ['SIGTERM']",
        "forked child: 0",
    ], done.stderr


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_header_dimensions_agree_with_decoding(extension: str, channels: int) -> None:
    image = np.random.default_rng(0).integers(0, 255, (37, 53, channels), dtype=np.uint8).squeeze()
    ok, encoded = cv2.imencode(extension, image)
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    assert declared_size(encoded, "x") == (decoded.shape[1], decoded.shape[0]) == (53, 37)


def test_progressive_jpeg_header_is_read() -> None:
    image = np.random.default_rng(1).integers(0, 255, (21, 34, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and declared_size(encoded, "x") == (34, 21)


def test_pixel_limit_is_checked_before_decoding() -> None:
    bomb = pixel_bomb()
    as_array = lambda data: np.frombuffer(data, np.uint8)  # noqa: E731
    assert len(bomb) < 2_000 and declared_size(as_array(bomb), "bomb.png") == (50_000, 50_000)
    with pytest.raises(TooManyPixelsError, match="declares 50000 x 50000"):
        decode_image(as_array(bomb), "bomb.png", 40_000_000)
    with pytest.raises(BadImageError) as at_the_limit:  # the limit is inclusive: decoded (and found cut short)
        decode_image(as_array(pixel_bomb(100, 100)), "ok.png", 10_000)
    assert not isinstance(at_the_limit.value, TooManyPixelsError)
    with pytest.raises(BadImageError, match="not a supported image"):
        decode_image(as_array(json.dumps({"a": 1}).encode()), "data.json", 40_000_000)


@pytest.mark.parametrize("model_format", ["ckpt", "onnx"])
def test_api_runs_a_checkpoint_or_its_onnx_export_batched_or_not(
    model_format: str, digit_pngs: Path, tmp_path: Path
) -> None:
    """The LitAPI's own steps, in this process: a batch and a single input give predict's answers."""
    from digitcls.model.module import load_classifier
    from digitcls.serve.api import DigitAPI
    from digitcls.serve.gate import Upload, encode_input, model_input

    model_path = varied_checkpoint(tmp_path / "varied.ckpt")
    if model_format == "onnx":
        pytest.importorskip("onnxruntime", reason="the export extra is not installed")
        from digitcls.export import export_onnx

        model_path = export_onnx(load_classifier(model_path), tmp_path / "varied.onnx")
    predictions, _ = label_folder(load_predictor(model_path), digit_pngs)
    api = DigitAPI(str(model_path), (32, 32), max_batch_size=8, batch_timeout=0.0)
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # as in a worker process, which leaves Ctrl-C to the main process
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.signal(signal.SIGINT, on_ctrl_c)
    inputs = [
        api.decode_request(json.loads(encode_input(model_input(
            Upload((digit_pngs / image_id).read_bytes(), image_id, "none"), (32, 32), 10**6))))
        for image_id in predictions.image_id
    ]  # fmt: skip
    batched = [api.encode_response(p) for p in api.predict(api.batch(inputs))]
    single = [api.encode_response(api.predict(x)) for x in inputs]
    for row, one_of_batch, alone in zip(predictions.itertuples(), batched, single, strict=True):
        for answer in (one_of_batch, alone):
            assert answer["label"] == row.label
            assert answer["confidence"] == pytest.approx(row.confidence, abs=1e-4)
