"""The model behind ``POST /predict``: a LitServe ``LitAPI`` over ``digitcls.inference.load_predictor``."""

from __future__ import annotations

import os
import signal

import litserve as ls
from torch import Tensor

from digitcls.inference import load_predictor
from digitcls.serve.gate import decode_input
from digitcls.serve.stopping import exit_with_parent


class DigitAPI(ls.LitAPI):
    """Batches of checked uint8 inputs (see ``gate``) -> label, confidence, top-3 and every class's probability.

    Pickled into each worker process, so it holds only the model's path until ``setup`` loads it there.
    """

    def __init__(self, model_path: str, img_size: tuple[int, int], max_batch_size: int, batch_timeout: float):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.model_path = model_path
        self.img_size = img_size
        self.server_pid = os.getpid()

    def setup(self, device: str) -> None:
        # Ctrl-C reaches every process of the terminal's group; the main process stops the workers itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if os.getpid() != self.server_pid:  # in a worker process, started by the server's main process
            exit_with_parent(self.server_pid)
        self.predictor = load_predictor(self.model_path)

    def decode_request(self, request: dict) -> Tensor:
        return decode_input(request, self.img_size)

    def predict(self, images: Tensor) -> Tensor:
        """One input (3 x H x W, when batching is off) or a stacked batch (N x 3 x H x W)."""
        single = images.ndim == 3
        probabilities = self.predictor.probabilities(images[None] if single else images)
        return probabilities[0] if single else probabilities

    def encode_response(self, probabilities: Tensor) -> dict:
        names = self.predictor.class_names
        top = probabilities.topk(min(3, len(names)))
        pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ranked = [{"label": names[i], "probability": p} for p, i in pairs]
        return {
            "label": ranked[0]["label"],
            "confidence": ranked[0]["probability"],
            "top3": ranked,
            "probabilities": dict(zip(names, probabilities.tolist(), strict=True)),
        }
