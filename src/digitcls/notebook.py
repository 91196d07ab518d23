"""The tiny generated dataset the exploration notebook trains on when there is no data or run yet, so the
notebook itself shows ideas, not boilerplate.

`make notebook` executes the notebook headless with nbclient's own command (``jupyter execute``) into
``outputs/notebooks/`` (the committed notebook stays stripped of outputs); a failing cell ends it with exit status 1
and that cell's error.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from digitcls import atomic

TINY_SPLITS = {"train": 40, "val": 10, "test": 10}  # images per class: 400 / 100 / 100


# --- tiny stand-ins for a learner who has no data, run or sweep yet ---------------------------------


def draw_digit(label: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A size x size uint8 MNIST-like digit (white on black), randomly shifted, scaled, thickened, noised."""
    image = np.zeros((size, size), np.uint8)
    scale = rng.uniform(0.7, 0.95)
    dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
    font = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX)[int(rng.integers(2))]
    cv2.putText(image, str(label), (7 + dx, 22 + dy), font, scale, 255, int(rng.integers(2, 4)), cv2.LINE_AA)
    noisy = image + rng.normal(0, 10, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def make_tiny_dataset(root: str | Path, per_class: dict[str, int] | None = None, seed: int = 0) -> Path:
    """``root/{train,val,test}/<digit>/<n>.png`` like ``make data`` writes, but a few hundred drawn digits."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (per_class or TINY_SPLITS).items():
        for digit in range(10):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                png = cv2.imencode(".png", draw_digit(digit, rng))[1].tobytes()
                atomic.write_bytes(folder / f"{n}.png", png, durable=False)  # drawn again in a second
    return root
