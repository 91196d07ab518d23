"""Read an image's width and height from its header, before decoding it, to refuse pixel bombs.

A 1 KB PNG can declare 50,000 x 50,000 pixels: decoding it would allocate 7.5 GB (OpenCV itself aborts
only past 2^30 pixels, with an assertion). The header says how big the image will be, so the limit is
checked there. Only the formats digitcls reads (PNG, JPEG, BMP) are recognised.
"""

from __future__ import annotations

import struct

from digitcls.errors import BadImageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT (C4), JPG (C8) or DAC (CC)
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_MARKERS_WITHOUT_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})


class TooManyPixelsError(BadImageError):
    """An image declares more pixels than ``max_image_pixels`` allows."""


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header; None when ``data`` is none of these."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(data)
    if data.startswith(b"BM") and len(data) >= 26:
        (header_size,) = struct.unpack("<I", data[14:18])
        if header_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
            return struct.unpack("<HH", data[18:22])
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)  # a negative height means rows stored top-down
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in JPEG_MARKERS_WITHOUT_LENGTH:
            position += 2
            continue
        if marker in JPEG_FRAME_MARKERS:
            if position + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return None


def check_pixel_limit(data: bytes, max_pixels: int, name: str) -> tuple[int, int]:
    """The image's (width, height), after checking from its header that it holds at most ``max_pixels``.

    Raises:
        BadImageError: ``data`` is not a PNG, JPEG or BMP image, or its header declares no pixels.
        TooManyPixelsError: the header declares more than ``max_pixels`` pixels.
    """
    dimensions = image_dimensions(data)
    if dimensions is None:
        raise BadImageError(f"{name} is not a PNG, JPEG or BMP image.")
    width, height = dimensions
    if width == 0 or height == 0:
        raise BadImageError(f"{name} declares {width} x {height} pixels: it is empty or corrupt.")
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"{name} declares {width} x {height} = {width * height:,} pixels, more than "
            f"max_image_pixels={max_pixels:,}; send a smaller image (a digit needs far fewer pixels)."
        )
    return width, height
