"""Decode any supported image file into one convention: H x W x 3 uint8 RGB, then resize and tensorise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from digitcls.data.transforms import parse_img_size
from digitcls.errors import BadImageError


def read_image(path: str | Path) -> np.ndarray:
    """Read ``path`` as H x W x 3 uint8 RGB.

    Grayscale is replicated to 3 channels, BGR becomes RGB, an alpha channel is dropped and 16-bit
    images are reduced to 8 bits (``>> 8``). Unreadable, empty or undecodable files raise
    :class:`BadImageError` naming the file.
    """
    path = Path(path)
    try:
        # read the bytes ourselves: unlike imread, this tells "unreadable" from "not an image"
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise BadImageError(f"cannot read image file {path}: {error.strerror or error}.") from error
    if data.size == 0:
        raise BadImageError(f"image file {path} is empty (0 bytes): delete or replace it.")
    return decode_image(data, path)


def decode_image(data: np.ndarray, path: str | Path) -> np.ndarray:
    """Decode an encoded image (the bytes of a file, as uint8) into H x W x 3 uint8 RGB like ``read_image``;
    ``path`` only names the image in errors (a served request has no file)."""
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise BadImageError(f"image file {path} is corrupt or not a supported image: delete or replace it.")
    return _to_rgb_uint8(image, Path(path))


def _to_rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadImageError(
            f"image file {path} has unsupported pixel type {image.dtype}; use 8- or 16-bit images."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)  # drops alpha: opaque pixels keep their exact colour
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise BadImageError(f"image file {path} has {image.shape[2]} channels; expected 1, 3 or 4.")


def resize(image: np.ndarray, img_size: int | Sequence[int]) -> np.ndarray:
    """Resize to ``img_size`` (an int or (height, width)); a no-op when already that size.

    INTER_AREA when shrinking in both directions (no aliasing), INTER_LINEAR otherwise.
    """
    height, width = parse_img_size(img_size)
    in_height, in_width = image.shape[:2]
    if (in_height, in_width) == (height, width):
        return image
    shrinking = height <= in_height and width <= in_width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)  # cv2 takes (width, height)


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x C uint8 array -> C x H x W uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def load_image_tensor(path: str | Path, img_size: int | Sequence[int]) -> torch.Tensor:
    """Read, resize and convert one file: the dataset convention (3 x H x W uint8)."""
    return to_chw_tensor(resize(read_image(path), img_size))
