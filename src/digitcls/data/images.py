"""Decode any supported image file into one convention: H x W x 3 uint8 RGB, then resize and tensorise."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from digitcls.errors import BadImageError
from digitcls.schema import TRAIN

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_IMAGE_PIXELS = TRAIN.max_image_pixels


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read ``path`` as H x W x 3 uint8 RGB (:func:`decode_image`); a bad file raises :class:`BadImageError`
    naming it."""
    path = Path(path)
    try:
        # read the bytes ourselves: unlike imread, this tells "unreadable" from "not an image"
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise BadImageError(f"cannot read image file {path}: {error.strerror or error}.") from error
    return decode_image(data, path, max_pixels)


class TooManyPixelsError(BadImageError):
    """An image's header declares more pixels than ``max_image_pixels`` allows (e.g. a decompression bomb)."""


def decode_image(data: np.ndarray, path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an encoded image (a file's bytes, as uint8) into H x W x 3 uint8 RGB; ``path`` only names it
    in errors (a served request has no file). The header's size is checked against ``max_pixels`` first."""
    path = Path(path)
    if data.size == 0:
        raise BadImageError(f"image file {path} is empty (0 bytes): delete or replace it.")
    width, height = declared_size(data, path)
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"image file {path} declares {width} x {height} pixels, more than max_image_pixels={max_pixels} "
            "(a decompression bomb, or raise max_image_pixels if you trust it): not decoded."
        )
    try:
        # IMREAD_COLOR: grey replicated, alpha dropped, 16 bits reduced to 8 (PNG: >> 8), always 3 channels
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as error:  # OpenCV's own assertions (its pixel limit, odd headers): a bad file, not a crash
        detail = str(error).strip().splitlines()[-1]
        raise BadImageError(f"image file {path} could not be decoded by OpenCV ({detail}).") from None
    if image is None:
        raise BadImageError(f"image file {path} is corrupt or not a supported image: delete or replace it.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def declared_size(data: np.ndarray, path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding a pixel: a PNG's IHDR read directly (the
    common case, ~1 µs), any other format's header parsed by Pillow (~90 µs)."""
    head = data[:24].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: parses the header only
            return image.size
    except Image.DecompressionBombError:  # Pillow's own, fixed limit, far above the default max_image_pixels
        raise TooManyPixelsError(
            f"image file {path} declares more than {2 * Image.MAX_IMAGE_PIXELS} pixels (Pillow's limit for "
            "reading a header): not decoded."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise BadImageError(f"image file {path} is corrupt or not a supported image: delete or replace it.") from None


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (height, width), a no-op when already that size: INTER_AREA when shrinking in both
    directions (no aliasing), INTER_LINEAR otherwise."""
    height, width = size
    in_height, in_width = image.shape[:2]
    if (in_height, in_width) == (height, width):
        return image
    shrinking = height <= in_height and width <= in_width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)  # cv2 takes (width, height)


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x C uint8 array -> C x H x W uint8 tensor."""
    import torch  # here, not at the top: predict on onnxruntime decodes with this module and runs without torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


Preprocess = Callable[[np.ndarray], np.ndarray]


class BadImageWarning(UserWarning):
    """An unreadable image was skipped."""


def load_input(
    source: str | Path | bytes, size: tuple[int, int], preprocess: Preprocess | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, name: str = "the image",
) -> np.ndarray:
    """One model input, ``size`` x 3 uint8: a file (or an upload's bytes, called ``name`` in errors) decoded,
    preprocessed (e.g. :func:`digitcls.preprocess.mnist_rgb`) and resized. The one path from a file to
    the model, for training, evaluate, predict and serve alike."""
    if isinstance(source, bytes):
        image = decode_image(np.frombuffer(source, np.uint8), name, max_pixels)
    else:
        image = read_image(source, max_pixels)
    return resize(preprocess(image) if preprocess else image, size)


def load_inputs(
    paths: Iterable[Path], size: tuple[int, int], preprocess: Preprocess | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, on_bad_image: str = "skip", warned: set[Path] | None = None,
) -> tuple[list[tuple[Path, np.ndarray]], list[tuple[Path, str]]]:
    """:func:`load_input` of each file: (the readable ones with their input, the unreadable ones with why).
    An unreadable file raises (``on_bad_image=error``) or is skipped with a :class:`BadImageWarning`, once
    per file of ``warned`` (a caller that reads the same files every epoch keeps one set)."""
    loaded, skipped, warned = [], [], set() if warned is None else warned
    for path in paths:
        try:
            loaded.append((path, load_input(path, size, preprocess, max_pixels)))
        except BadImageError as error:
            if on_bad_image == "error":
                raise BadImageError(f"{error} (Or set on_bad_image=skip to leave such files out.)") from None
            skipped.append((path, str(error)))
            if path not in warned:
                warnings.warn(f"skipping it (on_bad_image=skip): {error}", BadImageWarning, stacklevel=2)
                warned.add(path)
    return loaded, skipped
