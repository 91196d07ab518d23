"""One way to run a trained model on batches, whether it is a Lightning checkpoint or an ONNX export."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from digitcls.data.transforms import parse_img_size
from digitcls.errors import CheckpointError
from digitcls.model.module import load_classifier


@dataclass
class Predictor:
    """``probabilities(uint8 N x 3 x H x W) -> float N x C``; images must already be ``img_size``."""

    path: Path
    class_names: list[str]
    img_size: tuple[int, int]
    probabilities: Callable[[Tensor], Tensor]


def load_predictor(path: str | Path) -> Predictor:
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _onnx_predictor(path)
    model = load_classifier(path)

    @torch.inference_mode()
    def probabilities(images: Tensor) -> Tensor:
        return model(images).softmax(dim=1)

    return Predictor(path, list(model.class_names), parse_img_size(model.hparams.img_size), probabilities)


def _onnx_predictor(path: Path) -> Predictor:
    import onnxruntime  # optional dependency: the `export` extra

    if not path.is_file():
        raise CheckpointError(f"model_path: {path} does not exist; export one with `make export MODEL=<ckpt>`.")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        class_names = json.loads(meta["class_names"])
        size = tuple(json.loads(meta["img_size"]))
    except Exception as error:
        raise CheckpointError(
            f"model_path: {path} is not a digitcls ONNX export ({type(error).__name__}: {error}); "
            "create one with `python -m digitcls.export model_path=<ckpt> format=onnx`."
        ) from None
    input_name = session.get_inputs()[0].name

    def probabilities(images: Tensor) -> Tensor:
        batch = images.float().div(255.0).numpy() if images.dtype == torch.uint8 else images.numpy()
        (logits,) = session.run(None, {input_name: np.ascontiguousarray(batch, dtype=np.float32)})
        return torch.from_numpy(logits).softmax(dim=1)

    return Predictor(path, list(class_names), (int(size[0]), int(size[1])), probabilities)
