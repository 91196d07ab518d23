"""Make a real-world photo or scan of one digit look like an MNIST sample (``preprocess=mnist``).

A phone photo is dark ink on light paper, any size, anywhere in the frame: fed as-is, an MNIST model mostly
sees background. This does the normalisation MNIST's authors did (LeCun et al.; docs/inference.md).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

MNIST_SIZE = 28
DIGIT_BOX = 20
MIN_CONTRAST = 16


def to_mnist_style(image: np.ndarray) -> np.ndarray:
    """An H x W (x 3) uint8 image of one digit -> 28 x 28 uint8, white ink on black, MNIST-normalised."""
    frame = np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # light paper: invert so ink is bright, as in MNIST
        gray = 255 - gray
    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:  # blank paper: nothing to find
        return frame
    smooth = cv2.GaussianBlur(gray, (3, 3), 0)
    level, ink = cv2.threshold(smooth, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    points = cv2.findNonZero(ink)
    if points is None:
        return frame
    x, y, w, h = cv2.boundingRect(points)
    # keep grey levels of the ink (anti-aliasing, like MNIST) but drop the paper's texture
    digit = np.where(smooth[y : y + h, x : x + w] >= level, gray[y : y + h, x : x + w], 0)
    scale = DIGIT_BOX / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = cv2.resize(digit.astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    top, left = (MNIST_SIZE - size[1]) // 2, (MNIST_SIZE - size[0]) // 2
    frame[top : top + size[1], left : left + size[0]] = digit
    moments = cv2.moments(frame)  # shift the centre of mass to the middle, as MNIST did
    if moments["m00"] == 0:
        return frame
    cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    shift = np.float32([[1, 0, MNIST_SIZE / 2 - cx], [0, 1, MNIST_SIZE / 2 - cy]])
    return cv2.warpAffine(frame, shift, (MNIST_SIZE, MNIST_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)


def mnist_rgb(image: np.ndarray) -> np.ndarray:
    """``to_mnist_style`` as 28 x 28 x 3, the dataset's channel convention."""
    return cv2.cvtColor(to_mnist_style(image), cv2.COLOR_GRAY2RGB)


PREPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {"none": None, "mnist": mnist_rgb}
