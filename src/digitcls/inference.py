"""One way to run a trained model on batches, whether it is a Lightning checkpoint or an ONNX export.

A checkpoint runs on onnxruntime through its export cached as ``<name>.ckpt.onnx`` (docs/inference.md), else on
torch. The cache is keyed on the checkpoint's size and mtime (ns) and :data:`FORMAT`, not a hash: reading a large
checkpoint would cost more than the start-up the cache saves. torch and Lightning are imported only on the torch
path and for the export (``import lightning`` is slow).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from digitcls.errors import CheckpointError, DigitclsError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from torch import Tensor

Backend = Literal["auto", "onnxruntime", "torch"]
SOURCE_KEY = "digitcls_source_checkpoint"
FORMAT = 1  # raise when the exported graph changes (digitcls.export.Inference): older caches are remade
ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, "Tensor")


@dataclass
class Predictor:
    """A model ready to label batches; images must already be ``img_size``.

    ``run``: uint8 (or float in [0, 1]) ``N x 3 x H x W`` numpy array -> float32 ``N x C`` probabilities.
    ``backend`` says what runs it (``onnxruntime`` or ``torch``)."""

    path: Path
    class_names: list[str]
    img_size: tuple[int, int]
    backend: str
    run: Callable[[np.ndarray], np.ndarray]

    def probabilities(self, images: ArrayOrTensor) -> ArrayOrTensor:
        """``run`` for a numpy array or a torch tensor; the answer is of the same kind."""
        if isinstance(images, np.ndarray):
            return self.run(images)
        import torch

        return torch.from_numpy(self.run(images.cpu().numpy()))


def load_predictor(path: str | Path, backend: Backend = "auto") -> Predictor:
    """The model in ``path`` (a ``.ckpt`` or an ``.onnx`` export) on ``backend``; ``auto`` = onnxruntime
    when installed, else torch. A checkpoint whose export fails (an operator ONNX lacks, a read-only
    folder) runs on torch under ``auto``, with a warning saying why."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _session_predictor(path, *_open_session(path))
    # the `export` extra is both packages: onnx writes the export
    exportable = all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))
    if backend == "torch" or (backend == "auto" and not exportable):
        return torch_predictor(path)
    try:
        cache, key, opened = cache_path(path), source_key(path), None
        if cache.is_file():
            with contextlib.suppress(CheckpointError):  # a damaged cache is simply made again
                opened = _open_session(cache)
        if opened is None or opened[1].get(SOURCE_KEY) != key:  # missing, damaged or another checkpoint's
            export_cache(path, cache, key)
            opened = _open_session(cache)
        return _session_predictor(path, *opened)
    except DigitclsError:
        raise
    except Exception as error:  # the export is an optimisation: labelling goes on without it
        if backend == "onnxruntime":
            raise
        warnings.warn(f"model_path: running {path} on torch: exporting it to ONNX failed "
                      f"({type(error).__name__}: {error}).", stacklevel=2)
        return torch_predictor(path)


def cache_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".onnx")


def source_key(checkpoint: Path) -> str:
    """What identifies this version of ``checkpoint`` (a missing file is reported by the export)."""
    try:
        stat = checkpoint.stat()
    except OSError:
        return ""
    return json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": FORMAT})


def export_cache(checkpoint: Path, cache: Path, key: str) -> Path:
    """Export ``checkpoint`` to ``cache`` (atomically) with ``key`` in its metadata; torch and Lightning
    are imported here, once per checkpoint version."""
    from digitcls.export import export_onnx
    from digitcls.model.module import load_classifier

    return export_onnx(load_classifier(checkpoint), cache, extra_metadata={SOURCE_KEY: key})


def torch_predictor(path: Path) -> Predictor:
    import torch

    from digitcls.model.module import load_classifier

    model = load_classifier(path)

    @torch.inference_mode()
    def run(images: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(images)).softmax(dim=1).numpy()

    return Predictor(path, list(model.class_names), model.img_size, "torch", run)


def _open_session(path: Path) -> tuple[InferenceSession, dict[str, str]]:
    """(session over every usable core, the file's metadata)."""
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(
            f"model_path: {path} is an ONNX file, and running it needs onnxruntime: `pip install -e .[export]`, "
            "or point model_path at the .ckpt it was exported from."
        ) from None
    if not path.is_file():
        raise CheckpointError(f"model_path: {path} does not exist; export one with `make export MODEL=<ckpt>`.")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    # idle operator threads sleep instead of spinning: they share the cores with the decoding threads, and
    # spinning made labelling 10,000 PNGs 1.35x slower on 2 cores (5.3 s vs 3.9 s, MobileNetV3-small)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session, dict(session.get_modelmeta().custom_metadata_map)
    except Exception as error:
        raise CheckpointError(
            f"model_path: {path} is not an ONNX file onnxruntime can run ({type(error).__name__}: {error}); "
            "create one with `python -m digitcls.export model_path=<ckpt> format=onnx`."
        ) from None


def _session_predictor(path: Path, session: InferenceSession, meta: dict[str, str]) -> Predictor:
    """``path`` names the model in messages: the checkpoint for a cached export."""
    try:
        class_names = [str(name) for name in json.loads(meta["class_names"])]
        height, width = json.loads(meta["img_size"])
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"model_path: {path} is not a digitcls ONNX export (no {error} in its metadata); "
            "create one with `python -m digitcls.export model_path=<ckpt> format=onnx`."
        ) from None
    input_name = session.get_inputs()[0].name

    def run(images: np.ndarray) -> np.ndarray:
        batch = images.astype(np.float32) / np.float32(255) if images.dtype == np.uint8 else images
        (logits,) = session.run(None, {input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # softmax, without importing torch
        return shifted / shifted.sum(axis=1, keepdims=True)

    return Predictor(path, class_names, (int(height), int(width)), "onnxruntime", run)
