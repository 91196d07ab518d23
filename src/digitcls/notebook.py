"""The tiny generated dataset the exploration notebook trains on when there is no data or run yet, so the
notebook itself shows ideas, not boilerplate (`make notebook` runs it with nbclient's ``jupyter execute``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from digitcls import atomic

TINY_SPLITS = {"train": 40, "val": 10, "test": 10}  # images per class: 400 / 100 / 100


def draw_digit(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 28 x 28 uint8 MNIST-like digit (white on black), randomly shifted, scaled, thickened, noised."""
    image = np.zeros((28, 28), np.uint8)
    scale = rng.uniform(0.7, 0.95)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    font = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)[int(rng.integers(2))]
    cv2.putText(image, str(label), (7 + dx, 22 + dy), font, scale, 255, int(rng.integers(2, 4)), cv2.LINE_AA)
    noisy = image + rng.normal(0, 10, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def make_tiny_dataset(root: str | Path) -> Path:
    """``root/{train,val,test}/<digit>/<n>.png`` like ``make data`` writes, but a few hundred drawn digits."""
    root = Path(root)
    rng = np.random.default_rng(0)
    for split, count in TINY_SPLITS.items():
        for digit in range(10):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                png = cv2.imencode(".png", draw_digit(digit, rng))[1].tobytes()
                atomic.write_bytes(folder / f"{n}.png", png, durable=False)  # drawn again in a second
    return root
